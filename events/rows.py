"""Writes (and reads back) of model rows for the hot paths (append, projections), as plain SQL.

The ORM builds every INSERT and UPDATE anew: for the one or two rows of a writer's own
event that took longer than the database did (bulk_update builds a CASE per field and
row). These helpers send the same SQL the ORM would, with each value prepared by the
model's own field (`get_db_prep_save`: JSON, UUIDs, datetimes on PostgreSQL and SQLite
alike), so what lands in the table is what `save()` would have written.
"""

import contextlib
import contextvars
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    Field,
    IntegerField,
    JSONField,
    Model,
    TextField,
    UUIDField,
)

M = TypeVar("M", bound=Model)

# Rows per INSERT ... RETURNING statement: well below the bound parameters SQLite and
# PostgreSQL allow in one statement.
RETURNING_CHUNK = 100


def _db():
    # The thread's own connection object: `django.db.connection` is a proxy that looks the
    # connection up again on every attribute access, once per value prepared below.
    return connections[DEFAULT_DB_ALIAS]


def _values(db, rows: Sequence[Model], fields: Sequence[Field], *, add: bool) -> list[list[Any]]:
    return [[field.get_db_prep_save(field.pre_save(row, add), db) for field in fields] for row in rows]


# Writes waiting to go with the next statement (rows_joined): None outside such a block.
_joined: contextvars.ContextVar[list[tuple[str, list[Any]]] | None] = contextvars.ContextVar(
    "rows_joined", default=None
)


@contextlib.contextmanager
def rows_joined() -> Iterator[None]:
    """Inside: a write whose result nobody reads (rows_execute) waits for the next single-row
    rows_insert and goes with it, as one multi-statement query (psycopg's client-side cursor
    uses the simple query protocol): one round trip instead of two on PostgreSQL (issue 14:
    the inline views' UPDATE of the current row rides with the INSERT of the revision row).

    A waiting write has not happened yet: only a write that nothing later in the block reads
    may wait (the views read only their own tables, and each writes its own after reading).
    What is still waiting at the end of the block is sent then. An error inside the block
    drops what waits: the caller rolls back to before the block (the inline views' savepoint)
    and nothing of it may reach a later statement. A waiting write that fails fails the
    statement it went with; the caller learns which view failed by applying them again one
    by one without this block. Elsewhere than on PostgreSQL every write goes at once.
    """
    if _db().vendor != "postgresql" or _joined.get() is not None:
        yield
        return
    waiting: list[tuple[str, list[Any]]] = []
    token = _joined.set(waiting)
    try:
        yield
    finally:
        _joined.reset(token)
    # Only reached without an error: the writes still waiting go now.
    if waiting:
        with _db().cursor() as cursor:
            cursor.execute("; ".join(sql for sql, _ in waiting), [p for _, params in waiting for p in params])


def rows_execute(sql: str, params: Sequence[Any]) -> None:
    """Send one write whose result is not read: at once, or inside rows_joined with the next statement."""
    waiting = _joined.get()
    if waiting is not None:
        waiting.append((sql, list(params)))
        return
    with _db().cursor() as cursor:
        cursor.execute(sql, list(params))


def _take_joined() -> tuple[str, list[Any]]:
    """The writes waiting in rows_joined as a prefix of the next statement ("" when none)."""
    waiting = _joined.get()
    if not waiting:
        return "", []
    prefix = "".join(f"{sql}; " for sql, _ in waiting)
    params = [p for _, statement_params in waiting for p in statement_params]
    waiting.clear()
    return prefix, params


def rows_insert(
    rows: Sequence[Model], *, ignore_conflicts: bool = False, returning: str | None = None
) -> list[Any]:
    """INSERT new rows of one model (its auto primary key left to the database).

    With `ignore_conflicts`, rows that would break a unique constraint are skipped (ON
    CONFLICT DO NOTHING, on PostgreSQL and SQLite). With `returning` (a column), the values
    of that column for the rows actually inserted, in order: RETURNING needs the rows in
    one statement, so they go RETURNING_CHUNK at a time. Without it, one single-row
    statement sent as one executemany (a pipeline on psycopg 3): a VALUES list of hundreds
    of rows would be a statement text that psycopg parses anew each time.
    """
    if not rows:
        return []
    db = _db()
    model = type(rows[0])
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    quote = db.ops.quote_name
    head = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(field.column) for field in fields)})"
    placeholders = f"({', '.join(['%s'] * len(fields))})"
    tail = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    values = _values(db, rows, fields, add=True)
    with db.cursor() as cursor:
        if not returning:
            # One row (a writer's own event, the common case) as a plain execute: psycopg's
            # executemany enters pipeline mode and syncs, more work than the single statement.
            if len(values) == 1:
                # With the writes waiting in rows_joined, if any: one round trip for all.
                prefix, waiting_params = _take_joined()
                cursor.execute(f"{prefix}{head} VALUES {placeholders}{tail}", [*waiting_params, *values[0]])
            else:
                cursor.executemany(f"{head} VALUES {placeholders}{tail}", values)
            return []
        returned = []
        for start in range(0, len(values), RETURNING_CHUNK):
            chunk = values[start : start + RETURNING_CHUNK]
            cursor.execute(
                f"{head} VALUES {', '.join([placeholders] * len(chunk))}{tail} RETURNING {quote(returning)}",
                [value for row_values in chunk for value in row_values],
            )
            returned += [value for (value,) in cursor.fetchall()]
        return returned


# Field kinds whose get_db_prep_save hands PostgreSQL these Python values unchanged (an aware
# datetime, a str, an int, a UUID): rows_copy passes such values as they are. Anything else
# (a naive datetime, a JSON value, another field) goes through the field as rows_insert does.
_AS_IS: tuple[tuple[type[Field], tuple[type, ...]], ...] = (
    (CharField, (str,)),
    (TextField, (str,)),
    (BooleanField, (bool,)),
    (IntegerField, (int,)),  # PositiveIntegerField, BigIntegerField... are IntegerFields
    (BigIntegerField, (int,)),
    (UUIDField, (uuid.UUID,)),
    (DateTimeField, (dt.datetime,)),
)


def _preparer(db, field: Field) -> Callable[[Model], Any]:
    """How rows_copy reads one field's value from a row for COPY (see _AS_IS)."""
    kinds = next((kinds for kind, kinds in _AS_IS if isinstance(field, kind)), None)
    prepare, attname = field.get_db_prep_save, field.attname
    if isinstance(field, JSONField) and field.encoder is None:
        # The JSON text itself (COPY's text format takes every column as text): what the
        # field's Jsonb adapter would dump, without building the adapter per value.
        def as_json(row: Model) -> Any:
            value = getattr(row, attname)
            return None if value is None else json.dumps(value)

        return as_json
    if kinds is None or getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda row: prepare(field.pre_save(row, True), db)

    def as_is(row: Model) -> Any:
        value = getattr(row, attname)
        if value is None or (
            type(value) in kinds and (not isinstance(value, dt.datetime) or value.tzinfo is not None)
        ):
            return value
        return prepare(value, db)

    return as_is


def rows_copy(rows: Sequence[Model]) -> None:
    """INSERT new rows of one model with PostgreSQL's COPY (its auto primary key left to the
    database): a projection's batch of hundreds of rows during a rebuild or a catch-up.

    COPY has no ON CONFLICT: the caller must know the rows are new (the revisions view reads
    what its batch would collide with first, under the checkpoint's lock). One COPY sends the
    rows as one stream, the values encoded by psycopg's C dumpers; the executemany of
    rows_insert was one statement per row, each with its own parameters quoted in Python,
    and the largest part of a rebuild's time (issue 14's profile). PostgreSQL only: elsewhere
    it is rows_insert. COPY costs two round trips (start, then data and end): for a row or two,
    rows_insert is quicker.
    """
    if not rows:
        return
    db = _db()
    if db.vendor != "postgresql":
        rows_insert(rows)
        return
    model = type(rows[0])
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    preparers = [_preparer(db, field) for field in fields]
    quote = db.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    sql = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"
    with db.cursor() as cursor, db.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row([prepare(row) for prepare in preparers])


def rows_update(rows: Sequence[Model], *, fields: Sequence[Field]) -> None:
    """UPDATE `fields` of existing rows by primary key: one statement per row, sent as one
    executemany."""
    if not rows:
        return
    db = _db()
    model = type(rows[0])
    quote = db.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    values = _values(db, rows, fields, add=False)
    with db.cursor() as cursor:
        table, key = quote(model._meta.db_table), quote(model._meta.pk.column)
        sql = f"UPDATE {table} SET {assignments} WHERE {key} = %s"  # noqa: S608 - names from the model
        params = [[*row_values, row.pk] for row_values, row in zip(values, rows, strict=True)]
        if len(params) == 1:  # see rows_insert
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)


def rows_from_cursor(model: type[M], cursor) -> list[M]:
    """The model instances for the rows an executed statement returned (SELECT or RETURNING).

    What RawQuerySet does, without its per-query setup (column mapping, deferred-field checks,
    annotation handling), which cost more than the query on the write path (issue 14's
    profile). Each column named like a concrete field goes through that field's database
    converters (JSON text to values, SQLite's UUID and datetime text...), as the ORM's reads
    do; the statement returns every concrete column (SELECT *, RETURNING *), or some of them
    in the model's field order (Model.from_db's rule; the others are deferred); any other
    column becomes an attribute as it is.
    """
    db = _db()
    by_column = {field.column: field for field in model._meta.concrete_fields}
    columns = [column[0] for column in cursor.description]
    # Per column: the attribute name, and its converters each with the expression they expect.
    steps: list[tuple[str, tuple[tuple[Any, Any], ...]]] = []
    for column in columns:
        field = by_column.get(column)
        if field is None:
            steps.append((column, ()))
            continue
        expression = field.get_col(model._meta.db_table)
        found = db.ops.get_db_converters(expression) + field.get_db_converters(db)  # type: ignore[attr-defined]
        steps.append((field.attname, tuple((converter, expression) for converter in found)))
    field_names = [name for name, _ in steps if name in {field.attname for field in by_column.values()}]
    rows = []
    for values in cursor.fetchall():
        named: dict[str, Any] = {}
        for value, (name, converters) in zip(values, steps, strict=True):
            for converter, expression in converters:
                value = converter(value, expression, db)
            named[name] = value
        row = model.from_db(db.alias, field_names, [named.pop(name) for name in field_names])
        for name, value in named.items():
            setattr(row, name, value)
        rows.append(row)
    return rows
