"""The imported git commits per repository (filled from the log once), and the hourly purge of
expired idempotency records on beat."""

from django.db import migrations, models

PURGE_SCHEDULE = ("idempotency records: purge expired", "agents_app.tasks.idempotency_records_purge_task", "41")


def fill_imported_commits(apps, schema_editor):
    """One walk of the log's git events: per (repository, commit), its newest event's position."""
    Event = apps.get_model("events", "Event")
    GitImportedCommit = apps.get_model("agents_app", "GitImportedCommit")
    newest: dict[tuple[str, str], int] = {}
    rows = Event.objects.filter(metadata__git_repo__isnull=False).order_by("position")
    for position, metadata in rows.values_list("position", "metadata").iterator(chunk_size=2000):
        repository, commit = metadata.get("git_repo"), metadata.get("git_commit")
        if repository and commit:
            newest[(repository, commit)] = position
    GitImportedCommit.objects.bulk_create(
        [GitImportedCommit(repository=r, commit=c, position=p) for (r, c), p in newest.items()], batch_size=1000
    )


def schedule_purge(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, minute = PURGE_SCHEDULE
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "crontab": crontab})


def unschedule_purge(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=PURGE_SCHEDULE[0]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('agents_app', '0005_blame_origins_on_revisions'),
        ('events', '0005_log_verification'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.CreateModel(
            name='GitImportedCommit',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('repository', models.CharField(help_text="The repository's root commit (its identity).", max_length=64)),
                ('commit', models.CharField(max_length=64)),
                ('position', models.BigIntegerField(help_text='Position of the newest event the commit stored.')),
            ],
            options={
                'default_permissions': (),
                'indexes': [models.Index(fields=['repository', '-position'], name='git_imported_newest_idx')],
                'constraints': [models.UniqueConstraint(fields=('repository', 'commit'), name='git_imported_commit_uniq')],
            },
        ),
        migrations.RunPython(fill_imported_commits, migrations.RunPython.noop),
        migrations.RunPython(schedule_purge, unschedule_purge),
    ]
