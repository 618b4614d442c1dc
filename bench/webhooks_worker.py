"""The Celery app for bench.webhooks' worker: the project's, with the bench's queue as the default,
so that tasks the worker itself queues (a dispatch queues a delivery per subscription) stay on
the bench's queue instead of going to the shared default one."""

import os

from project.celery import app

app.conf.task_default_queue = os.environ["BENCH_QUEUE"]
