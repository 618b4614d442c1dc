"""The systems under test, each behind the same small interface, on the same database server.

* `ThisProject`: the service's own write and read paths (agents_app.services and selectors).
* `EventSourcing`: an `eventsourcing` aggregate saved by the library's PostgreSQL recorder.
* `Reversion`: a Django model saved inside django-reversion's `create_revision()`.
* `SimpleHistory`: a Django model with django-simple-history's `HistoricalRecords`.
* `Raw`: psycopg INSERT/SELECT on a copy of the event table, autocommit: the hardware limit.

A handle is whatever a system needs to find one agent again (an id, or for `eventsourcing`
in W1 the aggregate kept in memory, as an application holding it would).
"""

import datetime as dt
import uuid
from typing import Any

import psycopg
from django.db import connection, transaction
from django.test.utils import override_settings
from psycopg.types.json import Jsonb

from agents_app.diff import DiffSide, revision_diff
from agents_app.document import parse_agent_document

ACTOR = "bench"
REASON = "bench edit"


class Conflict(Exception):
    """The agent moved on since it was read (If-Match failed); nothing was stored."""


def _side(name: str, revision: int, content: str, actor: str, at: dt.datetime) -> DiffSide:
    """A diff side from raw stored text, parsed as the service parses it (what a peer must do)."""
    document = parse_agent_document(content)
    return DiffSide(
        agent=name,
        revision=revision,
        content=document.content,
        sha256=document.sha256,
        actor=actor,
        recorded_at=at,
        frontmatter=document.frontmatter,
        body=document.body,
        tools=document.tools,
    )


def _relation_bytes(tables: list[str]) -> dict[str, int]:
    """pg_total_relation_size (heap + indexes + TOAST) of each table."""
    with connection.cursor() as cursor:
        return {
            table: cursor.execute("SELECT pg_total_relation_size(%s::regclass)", [table]).fetchone()[0]
            for table in tables
        }


# ----------------------------------------------------------------------------------------
class ThisProject:
    """agent_create / agent_revise with a ChangeContext; reads through the selectors."""

    def __init__(self, *, read_your_writes: bool = True) -> None:
        self.read_your_writes = read_your_writes
        self.label = "this project" if read_your_writes else "this project, read-your-writes off"
        self.names: dict[uuid.UUID, str] = {}

    def open(self) -> None:
        from agents_app.services import ChangeContext

        self.context = ChangeContext(actor=ACTOR, source="api", reason=REASON)

    def _settings(self):
        return override_settings(PROJECTION_READ_YOUR_WRITES=self.read_your_writes)

    def create(self, name: str, content: str) -> uuid.UUID:
        from agents_app.services import agent_create

        with self._settings():
            agent_id = agent_create(content=content, context=self.context).agent_id
        self.names[agent_id] = name
        return agent_id

    def revise(self, handle: uuid.UUID, content: str) -> None:
        from agents_app.services import agent_revise

        with self._settings():
            change = agent_revise(agent_id=handle, content=content, context=self.context)
        assert change.changed

    def reload(self, handle: uuid.UUID) -> uuid.UUID:
        return handle

    def read_current(self, handle: uuid.UUID) -> tuple[str, Any]:
        """What a client's GET returns: the content and the ETag (stream version)."""
        from agents_app.selectors import agent_get

        agent = agent_get(agent_id=handle)
        return agent.content, agent.stream_version

    def revise_if_match(self, handle: uuid.UUID, content: str, token: Any) -> None:
        from agents_app.services import agent_revise
        from events.exceptions import ConcurrencyConflict

        try:
            with self._settings():
                agent_revise(agent_id=handle, content=content, context=self.context, expected_version=token)
        except ConcurrencyConflict as exc:
            raise Conflict from exc

    def bulk_load(self, name: str, contents: list[str]) -> uuid.UUID:
        """The whole history in one append (as an import would), hash chain and all, and the
        claim on its name that the services write with a create (an agent without one is read
        as archived or bulk-written: its writes then search the stream for its last archive)."""
        from agents_app import event_types
        from agents_app.models import AgentNameClaim
        from events.services import event_append
        from events.types import NewEvent

        events = [
            NewEvent(
                type=event_types.CREATED if number == 1 else event_types.REVISED,
                data={"content": content, "revision": number},
            )
            for number, content in enumerate(contents, start=1)
        ]
        agent_id = uuid.uuid4()
        with self._settings():
            event_append(
                stream_id=agent_id, expected_version=0, events=events, metadata=self.context.metadata()
            )
            AgentNameClaim.objects.create(name=name, agent_id=agent_id)
        self.names[agent_id] = name
        return agent_id

    def version_content(self, handle: uuid.UUID, revision: int) -> str:
        from agents_app.selectors import revision_get

        return revision_get(agent_id=handle, revision=revision).content

    def diff(self, handle: uuid.UUID, old: int, new: int) -> dict[str, Any]:
        """What GET /agents/<name>/diff/?from=&to= computes, without HTTP."""
        from agents_app.selectors import revision_pair_by_name

        pair = revision_pair_by_name(name=self.names[handle], from_ref=str(old), to_ref=str(new))
        assert pair is not None, "the diff endpoint's one-statement read answers on PostgreSQL"
        old_row, new_row = pair
        return revision_diff(old=DiffSide.from_revision(old_row), new=DiffSide.from_revision(new_row))

    def storage(self) -> dict[str, tuple[int, int]]:
        """{part: (bytes, revisions)}: the log, the projections, and both together."""
        from agents_app import event_types
        from events.models import Event

        revisions = Event.objects.filter(type__in=event_types.CONTENT_EVENTS).count()
        sizes = _relation_bytes(
            [
                "events_event",
                "agents_app_agentrevision",
                "agents_app_agentcurrent",
                "agents_app_agentnameclaim",
            ]
        )
        log = sizes["events_event"] + sizes["agents_app_agentnameclaim"]
        views = sizes["agents_app_agentrevision"] + sizes["agents_app_agentcurrent"]
        return {
            "event log (+ name claims)": (log, revisions),
            "projections (current + revisions)": (views, revisions),
            "together": (log + views, revisions),
        }


# ----------------------------------------------------------------------------------------
class EventSourcing:
    """An AgentDefinition aggregate; `save()` appends its pending events in one transaction."""

    label = "eventsourcing"

    def __init__(self, *, dbname: str, host: str, port: int, user: str) -> None:
        self.options = {"dbname": dbname, "host": host, "port": port, "user": user}
        self.app = None
        # Writer processes must not all run the library's CREATE ... IF NOT EXISTS / CREATE OR
        # REPLACE FUNCTION at once (PostgreSQL fails concurrent catalog updates); the parent has.
        self.create_tables = True

    def open(self) -> None:
        from bench.peers.eventsourced import registry

        self.close()
        self.app = registry(**self.options, create_tables=self.create_tables)

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None

    def create(self, name: str, content: str):
        from bench.peers.eventsourced import AgentDefinition

        aggregate = AgentDefinition(name=name, content=content)
        self.app.save(aggregate)
        return aggregate

    def revise(self, handle, content: str) -> None:
        handle.revise(content=content)
        self.app.save(handle)

    def reload(self, handle):
        return self.app.repository.get(handle.id)

    def read_current(self, handle) -> tuple[str, Any]:
        aggregate = self.app.repository.get(handle.id)
        return aggregate.content, aggregate

    def revise_if_match(self, handle, content: str, token: Any) -> None:
        from eventsourcing.persistence import IntegrityError

        token.revise(content=content)
        try:
            self.app.save(token)
        except IntegrityError as exc:  # (originator_id, originator_version) already taken
            raise Conflict from exc

    def bulk_load(self, name: str, contents: list[str]):
        """The history in saves of up to 500 events (one save of 10,000 hangs in psycopg's pipeline)."""
        from bench.peers.eventsourced import AgentDefinition

        aggregate = AgentDefinition(name=name, content=contents[0])
        for number, content in enumerate(contents[1:], start=2):
            aggregate.revise(content=content)
            if number % 500 == 0:
                self.app.save(aggregate)
        self.app.save(aggregate)
        return aggregate

    def _event(self, handle, revision: int):
        # Every event carries the full text, so version N is one stored event: no replay.
        (event,) = self.app.events.get(handle.id, gt=revision - 1, lte=revision)
        return event

    def version_content(self, handle, revision: int) -> str:
        return self._event(handle, revision).content

    def version_replayed(self, handle, revision: int) -> str:
        """The library's own way to get version N: replay events 1..N (no snapshots configured)."""
        return self.app.repository.get(handle.id, version=revision).content

    def diff(self, handle, old: int, new: int) -> dict[str, Any]:
        sides = []
        for revision in (old, new):
            event = self._event(handle, revision)
            sides.append(_side(handle.name, revision, event.content, ACTOR, event.timestamp))
        return revision_diff(old=sides[0], new=sides[1])

    def read_back_all(self) -> int:
        """Every stored event, in notification order, turned back into a domain event."""
        count, start = 0, 1
        while True:
            page = self.app.recorder.select_notifications(start=start, limit=1000)
            if not page:
                return count
            for notification in page:
                self.app.mapper.to_domain_event(notification)
            count += len(page)
            start = page[-1].id + 1

    def storage(self) -> dict[str, tuple[int, int]]:
        table = self.app.recorder.events_table_name
        with connection.cursor() as cursor:
            revisions = cursor.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        return {"stored events": (_relation_bytes([table])[table], revisions)}


# ----------------------------------------------------------------------------------------
class Reversion:
    """ReversionAgent saved in `create_revision()`: a Revision row and a Version row per edit."""

    label = "django-reversion"

    def open(self) -> None:
        pass

    def create(self, name: str, content: str):
        import reversion

        from bench.peers.models import ReversionAgent

        with reversion.create_revision():
            reversion.set_comment(REASON)
            return ReversionAgent.objects.create(name=name, content=content)

    def revise(self, handle, content: str) -> None:
        import reversion

        with reversion.create_revision():
            reversion.set_comment(REASON)
            handle.content = content
            handle.version += 1
            handle.save()

    def reload(self, handle):
        from bench.peers.models import ReversionAgent

        return ReversionAgent.objects.get(pk=handle.pk)

    def read_current(self, handle) -> tuple[str, Any]:
        from bench.peers.models import ReversionAgent

        row = ReversionAgent.objects.get(pk=handle.pk)
        return row.content, row.version

    def revise_if_match(self, handle, content: str, token: Any) -> None:
        import reversion

        from bench.peers.models import ReversionAgent

        with reversion.create_revision():
            reversion.set_comment(REASON)
            # The row lock makes check-then-save atomic: how a Django view would honour If-Match.
            row = ReversionAgent.objects.select_for_update().get(pk=handle.pk)
            if row.version != token:
                raise Conflict
            row.content = content
            row.version += 1
            row.save()

    def bulk_load(self, name: str, contents: list[str]):
        """Revision and Version rows built as create_revision() builds them, inserted in bulk."""
        from django.contrib.contenttypes.models import ContentType
        from django.core import serializers
        from reversion.models import Revision, Version

        from bench.peers.models import ReversionAgent

        with transaction.atomic():
            agent = ReversionAgent.objects.create(name=name, content=contents[-1], version=len(contents))
            content_type = ContentType.objects.get_for_model(ReversionAgent)
            revisions = Revision.objects.bulk_create(
                [Revision(comment=REASON, date_created=dt.datetime.now(dt.UTC)) for _ in contents]
            )
            versions = []
            for number, (content, revision) in enumerate(zip(contents, revisions, strict=True), start=1):
                state = ReversionAgent(pk=agent.pk, name=name, content=content, version=number)
                versions.append(
                    Version(
                        revision=revision,
                        content_type=content_type,
                        object_id=str(agent.pk),
                        db="default",
                        format="json",
                        serialized_data=serializers.serialize("json", [state]),
                        object_repr=name,
                    )
                )
            Version.objects.bulk_create(versions)
        return agent

    def _version(self, handle, revision: int):
        from reversion.models import Version

        # The library's API: an object's versions; the Nth oldest is an OFFSET N-1 away.
        return Version.objects.get_for_object(handle).select_related("revision").order_by("pk")[revision - 1]

    def version_content(self, handle, revision: int) -> str:
        return self._version(handle, revision).field_dict["content"]

    def diff(self, handle, old: int, new: int) -> dict[str, Any]:
        from bench.peers.models import ReversionAgent

        agent = ReversionAgent.objects.get(name=handle.name)
        sides = []
        for revision in (old, new):
            version = self._version(agent, revision)
            sides.append(
                _side(
                    agent.name, revision, version.field_dict["content"], ACTOR, version.revision.date_created
                )
            )
        return revision_diff(old=sides[0], new=sides[1])

    def read_back_all(self) -> int:
        from reversion.models import Version

        count = 0
        for version in Version.objects.order_by("pk").iterator(chunk_size=2000):
            version.field_dict  # noqa: B018 - deserialising the stored object is the read-back
            count += 1
        return count

    def storage(self) -> dict[str, tuple[int, int]]:
        from reversion.models import Version

        tables = ["bench_peers_reversionagent", "reversion_revision", "reversion_version"]
        return {
            "model + revisions + versions": (sum(_relation_bytes(tables).values()), Version.objects.count())
        }


# ----------------------------------------------------------------------------------------
class SimpleHistory:
    """HistoryAgent.save() in a transaction: the UPDATE and its historical row commit together."""

    label = "django-simple-history"

    def open(self) -> None:
        pass

    def create(self, name: str, content: str):
        from bench.peers.models import HistoryAgent

        with transaction.atomic():
            agent = HistoryAgent(name=name, content=content)
            agent._change_reason = REASON
            agent.save()
        return agent

    def revise(self, handle, content: str) -> None:
        with transaction.atomic():
            handle.content = content
            handle.version += 1
            handle._change_reason = REASON
            handle.save()

    def reload(self, handle):
        from bench.peers.models import HistoryAgent

        return HistoryAgent.objects.get(pk=handle.pk)

    def read_current(self, handle) -> tuple[str, Any]:
        from bench.peers.models import HistoryAgent

        row = HistoryAgent.objects.get(pk=handle.pk)
        return row.content, row.version

    def revise_if_match(self, handle, content: str, token: Any) -> None:
        from bench.peers.models import HistoryAgent

        with transaction.atomic():
            row = HistoryAgent.objects.select_for_update().get(pk=handle.pk)
            if row.version != token:
                raise Conflict
            row.content = content
            row.version += 1
            row._change_reason = REASON
            row.save()

    def bulk_load(self, name: str, contents: list[str]):
        """The library's bulk_history_create with one unsaved copy of the agent per version."""
        from bench.peers.models import HistoryAgent

        with transaction.atomic():
            agent = HistoryAgent.objects.create(name=name, content=contents[-1], version=len(contents))
            # The create above wrote the last version already; the rest are written in bulk.
            states = [
                HistoryAgent(pk=agent.pk, name=name, content=content, version=number)
                for number, content in enumerate(contents[:-1], start=1)
            ]
            HistoryAgent.history.bulk_history_create(states, default_change_reason=REASON)
        return agent

    def _version(self, handle, revision: int):
        return handle.history.get(version=revision)

    def version_content(self, handle, revision: int) -> str:
        return self._version(handle, revision).content

    def diff(self, handle, old: int, new: int) -> dict[str, Any]:
        from bench.peers.models import HistoryAgent

        agent = HistoryAgent.objects.get(name=handle.name)
        sides = []
        for revision in (old, new):
            row = self._version(agent, revision)
            sides.append(_side(agent.name, revision, row.content, ACTOR, row.history_date))
        return revision_diff(old=sides[0], new=sides[1])

    def read_back_all(self) -> int:
        from bench.peers.models import HistoryAgent

        count = 0
        for row in HistoryAgent.history.order_by("history_id").iterator(chunk_size=2000):
            row.instance  # noqa: B018 - the agent as it was: the read-back
            count += 1
        return count

    def storage(self) -> dict[str, tuple[int, int]]:
        from bench.peers.models import HistoryAgent

        tables = ["bench_peers_historyagent", "bench_peers_historicalhistoryagent"]
        return {"model + history": (sum(_relation_bytes(tables).values()), HistoryAgent.history.count())}


# ----------------------------------------------------------------------------------------
RAW_TABLE = "bench_raw_event"


class Raw:
    """One INSERT (or SELECT) per operation, autocommit, on a copy of the event table: the limit."""

    label = "raw psycopg (limit)"

    def __init__(self, url: str, *, table: str = RAW_TABLE, event_type: str = "agent.revised") -> None:
        self.url = url
        self.db = None
        self.table = table
        self.event_type = event_type

    def open(self) -> None:
        self.close()
        self.db = psycopg.connect(self.url, autocommit=True)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    @staticmethod
    def table_create(url: str) -> None:
        # Same columns, defaults, identity and indexes as the service's log; no triggers.
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} (LIKE events_event INCLUDING ALL)")

    def _insert(self, stream_id: uuid.UUID, version: int, content: str) -> None:
        self.db.execute(
            f"INSERT INTO {self.table} (event_id, stream_id, stream_version, type, schema_version, data,"
            " metadata, recorded_at, hash) VALUES (%s, %s, %s, %s, 1, %s, %s, now(), '')",
            [
                uuid.uuid4(),
                stream_id,
                version,
                self.event_type,
                Jsonb({"content": content, "revision": version}),
                Jsonb({}),
            ],
            prepare=True,
        )

    def create(self, name: str, content: str) -> list:
        handle = [uuid.uuid4(), 1, name]  # stream id, version held in memory, name
        self._insert(handle[0], 1, content)
        return handle

    def revise(self, handle: list, content: str) -> None:
        handle[1] += 1
        self._insert(handle[0], handle[1], content)

    def reload(self, handle: list) -> list:
        return [handle[0], self.read_current(handle)[1], handle[2]]

    def read_current(self, handle: list) -> tuple[str, Any]:
        row = self.db.execute(
            f"SELECT data->>'content', stream_version FROM {self.table} WHERE stream_id = %s"
            " ORDER BY stream_version DESC LIMIT 1",
            [handle[0]],
            prepare=True,
        ).fetchone()
        return row[0], row[1]

    def bulk_load(self, name: str, contents: list[str]) -> list:
        handle = [uuid.uuid4(), len(contents), name]
        with self.db.transaction(), self.db.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {self.table} (event_id, stream_id, stream_version, type, schema_version, data,"
                " metadata, recorded_at, hash) VALUES (%s, %s, %s, 'agent.revised', 1, %s, %s, now(), '')",
                [
                    (
                        uuid.uuid4(),
                        handle[0],
                        number,
                        Jsonb({"content": content, "revision": number}),
                        Jsonb({}),
                    )
                    for number, content in enumerate(contents, start=1)
                ],
            )
        return handle

    def revise_if_match(self, handle: list, content: str, token: Any) -> None:
        try:
            self._insert(handle[0], token + 1, content)
        except psycopg.errors.UniqueViolation as exc:  # (stream_id, stream_version) is taken
            raise Conflict from exc

    def version_content(self, handle: list, revision: int) -> str:
        return self.db.execute(
            f"SELECT data->>'content' FROM {self.table} WHERE stream_id = %s AND stream_version = %s",
            [handle[0], revision],
            prepare=True,
        ).fetchone()[0]

    def diff(self, handle: list, old: int, new: int) -> list[str]:
        """Two SELECTs and a line diff: the least any diff of two stored texts can cost."""
        import difflib

        a, b = (self.version_content(handle, revision).split("\n") for revision in (old, new))
        return list(difflib.unified_diff(a, b, lineterm=""))

    def scan(self) -> int:
        """Every event of the service's log through a server-side cursor, JSON decoded."""
        count = 0
        with self.db.transaction(), self.db.cursor(name="bench_scan") as cursor:
            cursor.itersize = 2000
            cursor.execute(
                "SELECT position, event_id, stream_id, stream_version, type, schema_version, data, metadata,"
                " recorded_at, hash FROM events_event ORDER BY position"
            )
            for _ in cursor:
                count += 1
        return count

    def storage(self) -> dict[str, tuple[int, int]]:
        with connection.cursor() as cursor:
            revisions = cursor.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0]
        return {"event rows only": (_relation_bytes([self.table])[self.table], revisions)}
