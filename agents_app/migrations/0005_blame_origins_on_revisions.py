# Blame reads each line's and key's origin from the blamed row instead of replaying the history.
# Existing rows get theirs here, each agent's revisions in order, as the projection computes them
# when it applies a revision (so a later rebuild --verify finds no difference).

from django.db import migrations, models

BATCH = 500


def fill_origins(apps, schema_editor):
    # The function the revisions projection uses: one rule for the origins, here too.
    from agents_app.blame import revision_origins

    revisions = apps.get_model("agents_app", "AgentRevision")
    agents = revisions.objects.values_list("generation", "agent_id").distinct().order_by("generation", "agent_id")
    for generation, agent_id in list(agents):
        previous = None
        last = 0
        while True:
            # Pages read whole before they are written: no cursor stays open across the updates.
            page = list(
                revisions.objects.filter(generation=generation, agent_id=agent_id, revision__gt=last)
                .order_by("revision")
                .only("id", "revision", "content", "body_start", "frontmatter")[:BATCH]
            )
            if not page:
                break
            for row in page:
                body = row.content[row.body_start :]
                row.line_origins, row.key_origins = revision_origins(
                    revision=row.revision, frontmatter=row.frontmatter, body=body, previous=previous
                )
                previous = (row.frontmatter, body, row.line_origins, row.key_origins)
            revisions.objects.bulk_update(page, ["line_origins", "key_origins"])
            last = page[-1].revision


class Migration(migrations.Migration):
    dependencies = [
        ("agents_app", "0004_body_as_an_offset_into_the_content"),
    ]

    operations = [
        migrations.AddField(
            model_name="agentrevision",
            name="key_origins",
            field=models.JSONField(help_text="Frontmatter key -> the revision that last set it.", null=True),
        ),
        migrations.AddField(
            model_name="agentrevision",
            name="line_origins",
            field=models.JSONField(
                help_text="The revision that last wrote each body line: [revision, count, ...] in line order.",
                null=True,
            ),
        ),
        migrations.RunPython(fill_origins, migrations.RunPython.noop),
    ]
