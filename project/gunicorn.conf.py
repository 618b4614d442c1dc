"""gunicorn settings of the web process: `gunicorn -c project/gunicorn.conf.py`.

The Dockerfile's CMD, docker-compose's `web`, `make stack` and tests/test_stack.py all start
gunicorn this way. Each value can be changed from the environment (or on the command line,
which wins over this file).

Shutdown: SIGTERM (what `docker stop` and `docker compose down` send) is gunicorn's graceful
stop. The master closes the listening socket, each worker finishes the request it is serving
and exits; workers still busy after `graceful_timeout` seconds are killed. docker-compose.yml
gives the container longer than that (stop_grace_period) before Docker sends SIGKILL.
SIGINT and SIGQUIT are the quick stop; SIGHUP reloads the workers with new code.
"""

import os
import sys
from pathlib import Path

import environ

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from project.logging import logging_config  # noqa: E402 (needs ROOT on sys.path)

env = environ.Env()

wsgi_app = "project.wsgi:application"
chdir = str(ROOT)
bind = env.str("GUNICORN_BIND", default="0.0.0.0:8000")
# Sync workers: requests are short (one indexed row, or a diff of two documents) and the
# database connection is per worker. Scale by WEB_CONCURRENCY per host, then by hosts.
workers = env.int("WEB_CONCURRENCY", default=2)
threads = env.int("GUNICORN_THREADS", default=1)
timeout = env.int("GUNICORN_TIMEOUT", default=60)
graceful_timeout = env.int("GUNICORN_GRACEFUL_TIMEOUT", default=30)
keepalive = env.int("GUNICORN_KEEPALIVE", default=5)
# Recycle workers now and then so that a slow leak cannot grow for ever (0: never).
max_requests = env.int("GUNICORN_MAX_REQUESTS", default=1000)
max_requests_jitter = max_requests // 10
# The worker heartbeat file: in memory, not on the container's overlay filesystem, where a
# slow write can make gunicorn take a healthy worker for a hung one.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# gunicorn 27 binds a control socket under $HOME by default; nothing here uses it, and the
# image's user has no writable home.
control_socket_disable = True
# Plain HTTP behind a proxy: trust X-Forwarded-* only from these addresses (the proxy's).
forwarded_allow_ips = env.str("FORWARDED_ALLOW_IPS", default="127.0.0.1,::1")

# Logs: the same handler and format as Django and Celery (LOG_FORMAT, LOG_LEVEL); the access
# log becomes one JSON object per request with method, path, status, duration and request id.
accesslog = "-"
errorlog = "-"
loglevel = env.str("LOG_LEVEL", default="INFO").lower()
logconfig_dict = logging_config(
    log_format=env.str("LOG_FORMAT", default="text" if env.bool("DEBUG", default=False) else "json"),
    level=loglevel,
)
