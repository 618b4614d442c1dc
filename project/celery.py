"""The Celery application: configured from Django settings (CELERY_ namespace).

The signal handlers below carry the log context (project/logging.py) from the process that
queues a task to the worker that runs it: a request that appends an event queues
`projections_catch_up`, and the worker's log lines for that task carry the request's id.
"""

import contextlib
import logging.config
import os
import threading
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import kombu.exceptions
from celery import Celery, Task
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun
from django import db
from django.conf import settings
from django.db import transaction

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


# ----------------------------------------------------------------------------------------------
# Queueing work a request asks for (rebuilds, verifications; issue 17's webhooks)
# ----------------------------------------------------------------------------------------------
class TaskNotQueued(Exception):
    """The broker refused the task (down, unreachable): nothing was queued."""


# Embedded mode (CELERY_TASK_ALWAYS_EAGER, no broker): tasks run on these threads, so that
# the request that queues one answers at once instead of running it (a whole rebuild) first.
# Bounded: a burst of clicks queues behind two threads instead of starting a thread each.
BACKGROUND_THREADS = 2
_background = ThreadPoolExecutor(max_workers=BACKGROUND_THREADS, thread_name_prefix="task")
_pending: set[Future] = set()
_pending_lock = threading.Lock()


def enqueue(task: Task, *args: Any, **kwargs: Any) -> None:
    """Queue `task(*args, **kwargs)` once the current transaction commits.

    After the commit, because a worker must not start on a request's change that could still
    roll back. With a broker: published then, and a broker that refuses raises TaskNotQueued
    (from here when no transaction is open, as in a view, where the hook runs at once).
    Embedded: handed to a background thread then, never run inside the request.
    """
    if app.conf.task_always_eager:
        if settings.TASKS_EAGER_IN_BACKGROUND:
            transaction.on_commit(lambda: _submit(task, args, kwargs))
        else:  # the test suite: see settings.TASKS_EAGER_IN_BACKGROUND
            transaction.on_commit(lambda: task.apply(args, kwargs))
        return

    def publish() -> None:
        try:
            task.apply_async(args, kwargs)
        except (kombu.exceptions.OperationalError, OSError) as exc:
            raise TaskNotQueued(f"the task queue is unavailable: {exc.__class__.__name__}") from exc

    transaction.on_commit(publish)


def _submit(task: Task, args: tuple, kwargs: dict) -> None:
    future = _background.submit(_run_in_background, task, args, kwargs)
    with _pending_lock:
        _pending.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future) -> None:
    with _pending_lock:
        _pending.discard(future)


def _run_in_background(task: Task, args: tuple, kwargs: dict) -> None:
    try:
        task.apply(args, kwargs, throw=False)  # a failure is logged by Celery's tracer, as on a worker
    finally:
        db.connections.close_all()  # this thread's connections: the pool's threads live on


def background_wait(timeout: float = 30) -> None:
    """Wait for the tasks handed to background threads so far (tests, shutdown)."""
    with _pending_lock:
        pending = list(_pending)
    futures.wait(pending, timeout=timeout)
