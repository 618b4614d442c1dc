# The history's line counts for the whole file (frontmatter and body) beside the body's. Existing
# rows get theirs here, each agent's revisions in order, computed as the revisions projection does
# (agents_app.line_matching.file_changes), so that a later rebuild --verify finds no difference.

from django.db import migrations, models

BATCH = 500


def fill_file_counts(apps, schema_editor):
    from agents_app.document import body_lines
    from agents_app.line_matching import file_changes

    revisions = apps.get_model("agents_app", "AgentRevision")
    agents = revisions.objects.values_list("generation", "agent_id").distinct().order_by("generation", "agent_id")
    for generation, agent_id in list(agents):
        previous_head: list[str] = []
        last = 0
        while True:
            # Pages read whole before they are written: no cursor stays open across the updates.
            page = list(
                revisions.objects.filter(generation=generation, agent_id=agent_id, revision__gt=last)
                .order_by("revision")
                .only("id", "revision", "content", "body_start", "lines_added", "lines_removed")[:BATCH]
            )
            if not page:
                break
            for row in page:
                head = body_lines(row.content[: row.body_start])
                row.file_lines_added, row.file_lines_removed = file_changes(
                    old_head=previous_head, new_head=head, body_changes=(row.lines_added, row.lines_removed)
                )
                previous_head = head
            revisions.objects.bulk_update(page, ["file_lines_added", "file_lines_removed"])
            last = page[-1].revision


class Migration(migrations.Migration):
    dependencies = [
        ("agents_app", "0009_effective_permissions"),
    ]

    operations = [
        migrations.AddField(
            model_name="agentrevision",
            name="file_lines_added",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="agentrevision",
            name="file_lines_removed",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(fill_file_counts, migrations.RunPython.noop),
    ]
