"""The agent definition as an `eventsourcing` aggregate, stored by its PostgreSQL recorder.

The library's defaults are kept (JSON transcoder, no compression, no snapshots) except for
the aggregate cache, which its documentation recommends for a repository that reads the
same aggregates again (W2's If-Match loop reads the agent before every edit).
"""

import uuid

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class AgentDefinition(Aggregate):
    """One agent: its raw text and name; every revision is a `Revised` event."""

    @event("Created")
    def __init__(self, name: str, content: str) -> None:
        self.name = name
        self.content = content

    @event("Revised")
    def revise(self, content: str) -> None:
        self.content = content


class AgentRegistry(Application[uuid.UUID]):
    """The application whose `save()` appends an aggregate's new events in one transaction."""

    name = "AgentRegistry"


def registry(
    *, dbname: str, host: str, port: int, user: str, pool_size: int = 2, create_tables: bool = True
) -> AgentRegistry:
    """An application on its own connection pool to `dbname` (tables created unless told not to)."""
    return AgentRegistry(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": str(port),
            "POSTGRES_USER": user,
            "POSTGRES_PASSWORD": "",
            "POSTGRES_POOL_SIZE": str(pool_size),
            "AGGREGATE_CACHE_MAXSIZE": "1000",
            "CREATE_TABLE": "y" if create_tables else "n",
        }
    )
