"""Projections: the base class and the registry. The runner is events/runner.py, rebuilds events/rebuild.py.

Knows nothing about what a projection stores. A projection (a `Projection` subclass in the
app that owns the rows) says which event types it handles, how to apply a batch of events
to one *generation* of its rows, how to delete a generation, and how to list a
generation's rows for comparison. Selectors read the live generation only, so a rebuild
fills a new generation while reads are still answered from the old one, then swaps.
"""

from collections.abc import Iterator
from typing import Any, ClassVar

from events.types import StoredEvent


class Projection:
    """A read model built from the log; subclasses live in the app that owns the rows."""

    name: ClassVar[str]
    event_types: ClassVar[frozenset[str]]

    def apply(self, events: list[StoredEvent], *, generation: int) -> None:
        """Apply events (only of `event_types`, in position order) to one generation's rows."""
        raise NotImplementedError

    def reset(self, *, generation: int) -> None:
        """Delete every row of one generation."""
        raise NotImplementedError

    def rows(self, *, generation: int) -> Iterator[tuple[Any, dict[str, Any]]]:
        """(key, fields) for every row of one generation, ordered by key, for verification."""
        raise NotImplementedError


class UnknownProjection(LookupError):
    """No projection is registered under that name."""


_registry: dict[str, Projection] = {}


def projection_register(projection: Projection) -> None:
    """Make a projection known to the runner (called from the owning app's ready())."""
    _registry[projection.name] = projection


def projection_unregister(name: str) -> None:
    """Forget a projection (tests register toy projections for the length of a test)."""
    _registry.pop(name, None)


def projection_names() -> list[str]:
    return sorted(_registry)


def projection_get(name: str) -> Projection:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownProjection(
            f"no projection named {name!r}; known: {', '.join(projection_names())}"
        ) from None
