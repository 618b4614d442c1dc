"""The Celery application: configured from Django settings (CELERY_ namespace).

The signal handlers below carry the log context (project/logging.py) from the process that
queues a task to the worker that runs it: a request that appends an event queues
`projections_catch_up`, and the worker's log lines for that task carry the request's id.
"""

import contextlib
import logging.config
import os

from celery import Celery
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

from project.logging import log_context, log_context_bind, log_context_reset

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Message headers for the log context. Not `correlation_id`: Celery uses that name itself
# (the task id), and every custom header becomes an attribute of `task.request`.
HEADERS = {"request_id": "x_request_id", "correlation_id": "x_correlation_id"}

# task id -> token of the context bound in task_prerun, reset in task_postrun (same thread).
_task_tokens: dict[str, object] = {}


@setup_logging.connect
def _logging_from_django_settings(loglevel=None, **kwargs) -> None:
    """Worker and beat log like the web process (settings.LOGGING), at the level of `-l`.

    Connecting this signal also stops Celery from installing its own handlers on the root
    logger and from redirecting stdout and stderr into it.
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@before_task_publish.connect
def _context_into_headers(headers=None, **kwargs) -> None:
    if headers is None:
        return
    context = log_context()
    for key, header in HEADERS.items():
        if context.get(key):
            headers.setdefault(header, context[key])


@task_prerun.connect
def _context_from_headers(task_id=None, task=None, **kwargs) -> None:
    if task_id is None or task is None:
        return
    request = task.request
    # An eager task (no broker) has no headers but runs inside the caller's context: keep it.
    ids = {key: getattr(request, header, None) for key, header in HEADERS.items()}
    _task_tokens[task_id] = log_context_bind(task_id=task_id, task_name=task.name, **ids)


@task_postrun.connect
def _context_cleared(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        # ValueError: bound in another context, which Celery's pools never do; nothing to undo.
        with contextlib.suppress(ValueError):
            log_context_reset(token)  # type: ignore[arg-type]
