"""Expired idempotency records are purged on beat; a retry after the purge is a new request."""

import datetime as dt

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from agents_app.idempotency import idempotency_records_purge
from agents_app.models import IdempotencyRecord
from agents_app.tasks import idempotency_records_purge_task
from events.models import Event
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"


def age(key: str, hours: float) -> None:
    IdempotencyRecord.objects.filter(key=key).update(created_at=timezone.now() - dt.timedelta(hours=hours))


def test_the_purge_deletes_records_older_than_the_retention_and_keeps_fresh_ones(editor_api, settings):
    settings.IDEMPOTENCY_KEY_HOURS = 24
    for name in ("old-1", "old-2", "fresh", "edge"):
        response = editor_api.post(AGENTS, {"content": agent_text(name)}, **{"Idempotency-Key": name})
        assert response.status_code == 201
    age("old-1", 25)
    age("old-2", 24 * 30)
    age("edge", 23.9)

    deleted = idempotency_records_purge(batch_size=1)  # one row per batch: the loop goes on to the end

    assert deleted == 2
    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {"fresh", "edge"}


def test_the_retention_comes_from_the_idempotency_key_hours_setting(editor_api, settings):
    editor_api.post(AGENTS, {"content": agent_text("a")}, **{"Idempotency-Key": "a"})
    age("a", 3)

    settings.IDEMPOTENCY_KEY_HOURS = 4
    assert idempotency_records_purge() == 0
    settings.IDEMPOTENCY_KEY_HOURS = 2
    assert idempotency_records_purge() == 1
    assert not IdempotencyRecord.objects.exists()


def test_a_retry_after_the_purge_is_answered_as_a_new_request(editor_api):
    body = {"content": agent_text("once")}
    first = editor_api.post(AGENTS, body, **{"Idempotency-Key": "k"})
    replayed = editor_api.post(AGENTS, body, **{"Idempotency-Key": "k"})
    assert first.status_code == replayed.status_code == 201 and replayed["Idempotent-Replayed"] == "true"
    age("k", 48)

    assert idempotency_records_purge_task.delay().get() == 1
    again = editor_api.post(AGENTS, body, **{"Idempotency-Key": "k"})

    assert_problem(again, 409, "name-taken")  # what a new create of that name gets, not the old 201
    assert "Idempotent-Replayed" not in again
    assert Event.objects.count() == 1


def test_the_purge_runs_hourly_on_beat():
    task = PeriodicTask.objects.get(task="agents_app.tasks.idempotency_records_purge_task")

    assert task.enabled and task.crontab.hour == "*" and task.crontab.minute == "41"
