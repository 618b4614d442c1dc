"""A toy projection for the store, runner and rebuild tests: they prove the machinery, not the agent views.

`toy.tally` counts each stream's `toy.counted` events and keeps the type of the last one, in a
table the test creates (`toy_tally`; the events app has no table of its own for this, and one
created inside the test's transaction goes away with it). Rows are keyed by (projection,
generation, stream), so two toy projections can share the table. A `ToyProjection` with
`refuse_bad` raises on events whose data says `{"bad": true}`: a projection with a bug.
"""

import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

from django.db import connection

from events.projections import Projection
from events.types import NewEvent, StoredEvent

COUNTED = "toy.counted"
TABLE = "toy_tally"


def toy_table_create() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (projection VARCHAR(100) NOT NULL,"
            " generation INTEGER NOT NULL, stream_id VARCHAR(36) NOT NULL, events INTEGER NOT NULL,"
            " last_position BIGINT NOT NULL, PRIMARY KEY (projection, generation, stream_id))"
        )


def toy_table_drop() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


class ToyProjection(Projection):
    event_types: ClassVar[frozenset[str]] = frozenset({COUNTED})

    def __init__(self, name: str = "toy.tally", *, refuse_bad: bool = False) -> None:
        self.name = name  # type: ignore[misc]
        self.refuse_bad = refuse_bad

    def apply(self, events: list[StoredEvent], *, generation: int) -> None:
        with connection.cursor() as cursor:
            for event in events:
                if self.refuse_bad and event.data.get("bad"):
                    raise ValueError(f"toy cannot count event {event.position}")
                cursor.execute(
                    f"INSERT INTO {TABLE} (projection, generation, stream_id, events, last_position)"
                    " VALUES (%s, %s, %s, 1, %s) ON CONFLICT (projection, generation, stream_id)"
                    f" DO UPDATE SET events = {TABLE}.events + 1, last_position = excluded.last_position",
                    [self.name, generation, str(event.stream_id), event.position],
                )

    def reset(self, *, generation: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {TABLE} WHERE projection = %s AND generation = %s", [self.name, generation]
            )

    def rows(self, *, generation: int) -> Iterator[tuple[Any, dict[str, Any]]]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT stream_id, events, last_position FROM {TABLE}"
                " WHERE projection = %s AND generation = %s ORDER BY stream_id",
                [self.name, generation],
            )
            for stream_id, events, last_position in cursor.fetchall():
                yield stream_id, {"events": events, "last_position": last_position}

    def count(self, *, generation: int) -> dict[str, int]:
        """stream id -> events counted, in one generation."""
        return {key: fields["events"] for key, fields in self.rows(generation=generation)}


def counted(**data: Any) -> NewEvent:
    return NewEvent(type=COUNTED, data=data)


def new_stream() -> uuid.UUID:
    return uuid.uuid4()
