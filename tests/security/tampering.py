"""What a hostile database superuser can do: switch off the append-only triggers, on either database."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

TABLES = ("events_event", "events_logseal")


@contextmanager
def triggers_disabled(*tables: str) -> Iterator[Any]:
    """Every trigger of the tables off for the block (all of ours by default); a cursor to tamper with.

    PostgreSQL: ALTER TABLE ... DISABLE TRIGGER ALL. SQLite has no such switch: the triggers
    are dropped and created again from their stored SQL afterwards.
    """
    tables = tables or TABLES
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in tables:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
            try:
                yield cursor
            finally:
                for table in tables:
                    cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
            return
        marks = ", ".join(["%s"] * len(tables))
        cursor.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({marks})", tables
        )
        triggers = cursor.fetchall()
        assert triggers, f"no triggers on {tables}"
        for name, _ in triggers:
            cursor.execute(f"DROP TRIGGER {name}")
        try:
            yield cursor
        finally:
            for _, sql in triggers:
                cursor.execute(sql)


def skip_a_position() -> None:
    """Leave a gap in the positions, as a rolled-back append does on PostgreSQL."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT nextval(pg_get_serial_sequence('events_event', 'position'))")
        else:
            cursor.execute("UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'events_event'")
            assert cursor.rowcount == 1
