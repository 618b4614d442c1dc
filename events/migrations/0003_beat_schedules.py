"""Default beat schedules, stored in the database so operators can change them in the admin."""

from django.db import migrations

SCHEDULES = [
    # (name, task, interval seconds or crontab)
    ("projections: catch up (safety net)", "events.tasks.projections_catch_up", {"every": 10}),
    ("projections: nightly rebuild and verify", "events.tasks.projections_rebuild_all", {"hour": "3", "minute": "0"}),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, when in SCHEDULES:
        if "every" in when:
            interval, _ = IntervalSchedule.objects.get_or_create(every=when["every"], period="seconds")
            PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval})
        else:
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=when["minute"], hour=when["hour"], day_of_week="*", day_of_month="*", month_of_year="*",
                timezone="UTC",
            )
            PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "crontab": crontab})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_append_only_triggers"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
