"""The database itself refuses UPDATE and DELETE on the event log (invariant 1)."""

from django.db import migrations

POSTGRESQL_UP = """
CREATE FUNCTION events_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events_event is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_event_append_only
    BEFORE UPDATE OR DELETE ON events_event
    FOR EACH ROW EXECUTE FUNCTION events_event_append_only();
"""
POSTGRESQL_DOWN = """
DROP TRIGGER IF EXISTS events_event_append_only ON events_event;
DROP FUNCTION IF EXISTS events_event_append_only();
"""
SQLITE_UP = [
    """CREATE TRIGGER events_event_no_update BEFORE UPDATE ON events_event
       BEGIN SELECT RAISE(ABORT, 'events_event is append-only: UPDATE is not allowed'); END""",
    """CREATE TRIGGER events_event_no_delete BEFORE DELETE ON events_event
       BEGIN SELECT RAISE(ABORT, 'events_event is append-only: DELETE is not allowed'); END""",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS events_event_no_update", "DROP TRIGGER IF EXISTS events_event_no_delete"]
# TRUNCATE bypasses row triggers on PostgreSQL; the application's role should not hold the
# TRUNCATE privilege (README, "Deployment"). Test databases use it to reset between tests.


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"no append-only trigger for {schema_editor.connection.vendor}")
        for statement in [statements] if isinstance(statements, str) else statements:
            schema_editor.execute(statement, params=None)  # no placeholders: % is literal

    return run


class Migration(migrations.Migration):
    dependencies = [("events", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": POSTGRESQL_DOWN, "sqlite": SQLITE_DOWN}),
        ),
    ]
