"""Seals: checkpoints over position ranges that cover the whole log (invariant 4).

Also, on SQLite, the guard that keeps `INSERT OR REPLACE` / `REPLACE INTO` from rewriting a
stored event: SQLite's REPLACE deletes the conflicting row without firing the DELETE trigger
(recursive triggers are off), so the append-only triggers of 0002 never saw it.
"""

from django.conf import settings
from django.db import migrations, models

POSTGRESQL_UP = """
CREATE FUNCTION events_logseal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_logseal_append_only
    BEFORE UPDATE OR DELETE ON events_logseal
    FOR EACH ROW EXECUTE FUNCTION events_logseal_append_only();
"""
POSTGRESQL_DOWN = """
DROP TRIGGER IF EXISTS events_logseal_append_only ON events_logseal;
DROP FUNCTION IF EXISTS events_logseal_append_only();
"""
SQLITE_UP = [
    """CREATE TRIGGER events_logseal_no_update BEFORE UPDATE ON events_logseal
       BEGIN SELECT RAISE(ABORT, 'events_logseal is append-only: UPDATE is not allowed'); END""",
    """CREATE TRIGGER events_logseal_no_delete BEFORE DELETE ON events_logseal
       BEGIN SELECT RAISE(ABORT, 'events_logseal is append-only: DELETE is not allowed'); END""",
    # IGNORE, not ABORT: the append counts on INSERT ... ON CONFLICT DO NOTHING skipping the
    # row of a retried event id (events.rows.rows_insert), and a row skipped by this trigger
    # is skipped the same way (not inserted, not RETURNed). A plain INSERT of a duplicate now
    # inserts nothing instead of failing; the append checks what it got back either way.
    # Three EXISTS, not one OR: each is one lookup in its own unique index.
    """CREATE TRIGGER events_event_no_replace BEFORE INSERT ON events_event
       WHEN EXISTS (SELECT 1 FROM events_event WHERE position = NEW.position)
         OR EXISTS (SELECT 1 FROM events_event WHERE event_id = NEW.event_id)
         OR EXISTS (SELECT 1 FROM events_event
                    WHERE stream_id = NEW.stream_id AND stream_version = NEW.stream_version)
       BEGIN SELECT RAISE(IGNORE); END""",
    # ABORT here: the sealing service inserts plain rows and reads a conflict as "another
    # sealer got there first" (an IntegrityError), which IGNORE would hide.
    """CREATE TRIGGER events_logseal_no_replace BEFORE INSERT ON events_logseal
       WHEN EXISTS (SELECT 1 FROM events_logseal WHERE id = NEW.id)
         OR EXISTS (SELECT 1 FROM events_logseal WHERE after_position = NEW.after_position)
         OR EXISTS (SELECT 1 FROM events_logseal WHERE end_position = NEW.end_position)
       BEGIN SELECT RAISE(ABORT, 'events_logseal: a seal over this range exists already'); END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS events_logseal_no_update",
    "DROP TRIGGER IF EXISTS events_logseal_no_delete",
    "DROP TRIGGER IF EXISTS events_event_no_replace",
    "DROP TRIGGER IF EXISTS events_logseal_no_replace",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"no append-only trigger for {schema_editor.connection.vendor}")
        for statement in [statements] if isinstance(statements, str) else statements:
            schema_editor.execute(statement, params=None)  # no placeholders: % is literal

    return run


# Stored with the other schedules (0003, 0005) so operators can change it in the admin; the
# setting only gives the interval it starts with.
SCHEDULE = ("event log: seal new events", "events.tasks.events_seal_task")


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every = getattr(settings, "EVENT_SEAL_SECONDS", 30)
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.get_or_create(name=SCHEDULE[0], defaults={"task": SCHEDULE[1], "interval": interval})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SCHEDULE[0]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0006_projection_failures_and_cleanup'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.CreateModel(
            name='LogSeal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('after_position', models.BigIntegerField(db_comment="The previous seal's end_position (0 for the first): the range is after it.", unique=True)),
                ('end_position', models.BigIntegerField(db_comment='Last position covered, inclusive.', unique=True)),
                ('events', models.BigIntegerField(db_comment='How many events the range held when it was sealed.')),
                ('previous_hash', models.CharField(blank=True, db_comment="The previous seal's hash (empty for the first).", max_length=64)),
                ('hash', models.CharField(db_comment='SHA-256 over previous_hash, the range and (position, stream, version, hash) of every event in it, in position order (events.chain.SealHasher).', max_length=64)),
                ('sealed_at', models.DateTimeField(auto_now_add=True, db_comment='When it was written (not hashed).')),
            ],
            options={
                'default_permissions': ('view',),
            },
        ),
        migrations.AddField(
            model_name='logverification',
            name='events_unsealed',
            field=models.BigIntegerField(default=0, help_text='Events past the newest seal: only their stream chains cover them yet.'),
        ),
        migrations.AddField(
            model_name='logverification',
            name='seal_end_position',
            field=models.BigIntegerField(blank=True, help_text='Last position covered by the newest seal when it finished.', null=True),
        ),
        migrations.AddField(
            model_name='logverification',
            name='seal_hash',
            field=models.CharField(blank=True, help_text='Hash of that seal.', max_length=64),
        ),
        migrations.AddField(
            model_name='logverification',
            name='seals_checked',
            field=models.BigIntegerField(default=0, help_text='Seals recomputed from the log and found intact.'),
        ),
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": POSTGRESQL_DOWN, "sqlite": SQLITE_DOWN}),
        ),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
