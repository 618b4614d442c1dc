"""Settings for agent-registry.

Every deploy-specific value comes from the environment (see .env.example) with a safe
local default: a SQLite file next to manage.py and Celery running tasks eagerly in
process when REDIS_URL is unset.
"""

import warnings
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from project.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# `make run` writes .env.local once (DEBUG=1 and a generated SECRET_KEY, git- and
# docker-ignored) so that `manage.py` commands work as the README prints them after it.
# Variables set in the environment win over the file.
LOCAL_ENV_FILE = Path(env.str("LOCAL_ENV_FILE", default=str(BASE_DIR / ".env.local")))
if LOCAL_ENV_FILE.is_file():
    environ.Env.read_env(LOCAL_ENV_FILE)

# ------------------------------------------------------------------------------
# Core
# ------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-local-development-key-only-used-with-DEBUG-on"  # noqa: S105
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "django_celery_beat",
    "events",
    "agents_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before WhiteNoise: static files get the Content-Security-Policy too.
    "csp.middleware.CSPMiddleware",
    "project.middleware.RequestIdMiddleware",
    "project.middleware.ProblemNotFoundMiddleware",
    # Static files (admin, Swagger UI) from the web process itself: no proxy needed for them.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After a successful write request: start webhook delivery now instead of at the next beat tick.
    "agents_app.webhooks.middleware.WebhookWakeMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The admin's base_site.html (favicon) and index.html (operations, scheduler box): found
        # before django.contrib.admin's own, which come first among the apps.
        "DIRS": [BASE_DIR / "project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ------------------------------------------------------------------------------
# Database
# ------------------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE makes every atomic block take SQLite's write lock at BEGIN: without it two
    # concurrent writers that both read first would deadlock on lock upgrade and one would
    # fail with "database is locked" instead of waiting its turn.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Column comments (db_comment) document the event table on PostgreSQL; SQLite ignores them.
SILENCED_SYSTEM_CHECKS = ["fields.W163"]

# ------------------------------------------------------------------------------
# Auth, i18n, static
# ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Password logins (the admin's): after LOGIN_FAILURE_LIMIT failures for one username from one
# address within the window, that username is refused from there, even with the right
# password, until the window ends. Counted in the cache (project/login_throttle.py).
AUTHENTICATION_BACKENDS = ["project.login_throttle.ThrottledModelBackend"]
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=15 * 60)
LANGUAGE_CODE = "en-us"
# One date format across the admin, Django's own pages too (project/formats/en/formats.py).
FORMAT_MODULE_PATH = ["project.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
# Without `collectstatic` (a checkout, the tests) WhiteNoise finds the files in the apps,
# and its warning that STATIC_ROOT does not exist yet says nothing useful.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at: ")

# ------------------------------------------------------------------------------
# Security (strict unless DEBUG; each can be relaxed from the environment, e.g. behind
# a TLS-terminating proxy)
# ------------------------------------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Orchestrators probe over plain HTTP inside the cluster: a redirect would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^api/v1/(healthz|readyz)$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Content-Security-Policy (django-csp) on every response, admin and API: scripts, styles,
# images, fonts and fetches from this origin only; no inline script or style except where a
# page marks it with the per-request nonce (only the Swagger UI page does, see
# agents_app/templates/agents_app/swagger_ui.html); no plugins, no <base>, never framed;
# forms post back here only. data: images are the icons in the Swagger UI's stylesheet.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
    }
}

# ------------------------------------------------------------------------------
# REST API
# ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents_app.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [
        # DRF's, but counting per process while Redis is down instead of failing every request.
        "agents_app.api.throttling.UserRateThrottle",
        "agents_app.api.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_USER", default="1200/min"),
        "anon": env.str("API_THROTTLE_ANON", default="120/min"),
    },
    "EXCEPTION_HANDLER": "agents_app.api.errors.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "URL_FORMAT_OVERRIDE": "format",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "agent-registry API",
    "DESCRIPTION": "Event-sourced versioning of AI agent definitions: every edit is an event; any "
    "revision can be read, diffed, blamed and audited.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our static files: no CDN at run time
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
}
# JSON escaping can make a 256 KiB document several times longer; bigger bodies get a 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=4 * 1024 * 1024)
API_TOKEN_DAYS = env.int("API_TOKEN_DAYS", default=90)
IDEMPOTENCY_KEY_HOURS = env.int("IDEMPOTENCY_KEY_HOURS", default=24)
# Projections lagging more events than this make /readyz answer 503.
READY_MAX_LAG_EVENTS = env.int("READY_MAX_LAG_EVENTS", default=1000)
# CORS is closed unless origins are listed: browsers elsewhere cannot call the API.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"

# ------------------------------------------------------------------------------
# Celery
# ------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# The in-memory transport names a host: without one kombu warns "No hostname was supplied"
# each time an eager task acquires a producer (every management command that writes).
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
# Throttle counters must be shared by every web process: Redis when configured.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
# Without a broker (the embedded default) tasks run in process, synchronously: the same
# code path, no worker needed.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Processes per worker (`celery worker --concurrency`); unset means one per CPU.
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=None)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3300)
CELERY_TASK_IGNORE_RESULT = True
# A write must never hang because the broker is down: fail fast, the beat catch-up and
# the writer's own inline catch-up cover for the lost message.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    # Tasks are acknowledged when done (acks_late, reject_on_worker_lost): Redis hands a
    # message that was taken but not acknowledged (its worker was SIGKILLed) to another worker
    # after this long: minutes, not hours. A rebuild that outlasts it is redelivered while it
    # still runs; the copy finds the rebuild lock taken and exits (events/rebuild.py), and
    # the catch-up and verification are safe to run twice.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=300),
    # Workers look for such messages every interval x throttle seconds (kombu's default is
    # 100 s); once a minute keeps a killed worker's task back within about 6 minutes.
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 6,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# Embedded mode (CELERY_TASK_ALWAYS_EAGER): a task a request queues (a rebuild, a verification)
# runs on a background thread after the commit, not inside the request (project.celery.enqueue).
# The test suite turns it off (tests/conftest.py): a thread would write outside the test's
# transaction; the tests of enqueue itself turn it on.
TASKS_EAGER_IN_BACKGROUND = True

# ------------------------------------------------------------------------------
# Domain
# ------------------------------------------------------------------------------
AGENT_MAX_BYTES = env.int("AGENT_MAX_BYTES", default=256 * 1024)
PROJECTION_BATCH_SIZE = env.int("PROJECTION_BATCH_SIZE", default=500)
# After a write commits, the writer brings the projections up to its own event before the
# call returns (read-your-writes); bulk imports may turn it off and let the workers do it.
PROJECTION_READ_YOUR_WRITES = env.bool("PROJECTION_READ_YOUR_WRITES", default=True)
# Seconds a writer waits for the projections to reach its own event (read-your-writes).
PROJECTION_WAIT_SECONDS = env.float("PROJECTION_WAIT_SECONDS", default=10.0)
# Tamper evidence (events.sealing, events.verification): beat seals new events this often
# (the interval the schedule starts with; operators change it in the admin), at most this
# many per seal; sealing and verification read the log this many rows per query.
EVENT_SEAL_SECONDS = env.int("EVENT_SEAL_SECONDS", default=30)
EVENT_SEAL_MAX_EVENTS = env.int("EVENT_SEAL_MAX_EVENTS", default=10_000)
EVENT_VERIFY_BATCH_SIZE = env.int("EVENT_VERIFY_BATCH_SIZE", default=2000)
# Events one writer's request applies at most while waiting for its own (the first writer
# after an outage would otherwise replay the whole backlog inside its request).
PROJECTION_WAIT_MAX_EVENTS = env.int("PROJECTION_WAIT_MAX_EVENTS", default=2000)
# A "running" rebuild run with no heartbeat for this long is failed by the cleanup task (SQLite;
# on PostgreSQL its rebuild lock says whether it is alive).
PROJECTION_REBUILD_STALE_SECONDS = env.int("PROJECTION_REBUILD_STALE_SECONDS", default=900)
# How long a writer waits for the append lock before it gets 503 with Retry-After (PostgreSQL).
APPEND_LOCK_TIMEOUT_SECONDS = env.float("APPEND_LOCK_TIMEOUT_SECONDS", default=5.0)

# ------------------------------------------------------------------------------
# Webhooks (agents_app.webhooks)
# ------------------------------------------------------------------------------
# Deliveries go to https URLs and public addresses only; these two open http and private,
# loopback and link-local addresses, for development and tests only.
WEBHOOK_ALLOW_HTTP = env.bool("WEBHOOK_ALLOW_HTTP", default=False)
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)
# Seconds to connect and to wait for the answer: a slow endpoint only delays its own events.
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=3.0)
WEBHOOK_READ_TIMEOUT = env.float("WEBHOOK_READ_TIMEOUT", default=5.0)
# Consecutive failed attempts after which a subscription is paused (PATCH active=true resumes it).
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=10)
# Backoff after the n-th failure: min(MAX, BASE * 2**(n-1)) seconds, with full jitter.
WEBHOOK_BACKOFF_BASE_SECONDS = env.float("WEBHOOK_BACKOFF_BASE_SECONDS", default=2.0)
WEBHOOK_BACKOFF_MAX_SECONDS = env.float("WEBHOOK_BACKOFF_MAX_SECONDS", default=600.0)
# Embedded mode (Celery eager, no worker): deliveries run in a background thread of the process
# that wrote. Not from the environment: the test suite turns it off (tests/conftest.py) except
# where a test exercises it, so no stray thread touches a test's database.
WEBHOOK_EAGER_THREADS = True

# ------------------------------------------------------------------------------
# Logging
# ------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# json: one object per line with the request and task ids, for log shippers; text: for a
# terminal. gunicorn (project/gunicorn.conf.py) and Celery (project/celery.py) use the same.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
try:
    LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
except ValueError as error:
    raise ImproperlyConfigured(str(error)) from error
