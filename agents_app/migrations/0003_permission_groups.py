"""The four groups the API and admin check: viewers, editors, publishers (labels) and auditors."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = {
    "Agent viewers": [("agents_app", "view_agent")],
    "Agent editors": [
        ("agents_app", "view_agent"),
        ("agents_app", "change_agent"),
        ("agents_app", "archive_agent"),
    ],
    "Agent publishers": [("agents_app", "view_agent"), ("agents_app", "publish_agent")],
    "Auditors": [("agents_app", "view_agent"), ("events", "view_event")],
}


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations ran; these groups need them now.
    for app_label in ("agents_app", "events"):
        app_config = apps.get_app_config(app_label)
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.set(
            [
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
                for app_label, codename in codenames
            ]
        )


def delete_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("agents_app", "0002_api_tokens_idempotency_permissions"),
        ("events", "0004_event_view_permission_only"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
