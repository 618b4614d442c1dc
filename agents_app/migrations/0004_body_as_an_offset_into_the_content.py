# The body is the end of the content: both views keep where it starts instead of a second copy.

from django.db import migrations, models

# LENGTH counts characters on PostgreSQL (text) and on SQLite, as Python's len() does.
FILL = "UPDATE {table} SET body_start = LENGTH(content) - LENGTH(body)"
UNFILL = "UPDATE {table} SET body = SUBSTR(content, body_start + 1)"


class Migration(migrations.Migration):
    dependencies = [
        ("agents_app", "0003_permission_groups"),
    ]

    operations = [
        migrations.AddField(
            model_name="agentcurrent",
            name="body_start",
            field=models.PositiveIntegerField(default=0, help_text="Where the body begins in content (characters)."),
        ),
        migrations.AddField(
            model_name="agentrevision",
            name="body_start",
            field=models.PositiveIntegerField(default=0, help_text="Where the body begins in content (characters)."),
        ),
        migrations.RunSQL(
            FILL.format(table="agents_app_agentcurrent"), UNFILL.format(table="agents_app_agentcurrent")
        ),
        migrations.RunSQL(
            FILL.format(table="agents_app_agentrevision"), UNFILL.format(table="agents_app_agentrevision")
        ),
        migrations.RemoveField(model_name="agentcurrent", name="body"),
        migrations.RemoveField(model_name="agentrevision", name="body"),
    ]
