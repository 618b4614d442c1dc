"""Schema evolution: stored events are upcast on read, one step at a time; rows are never rewritten.

An upcaster is registered for (type, schema_version) and turns data of that version into
data of the next version. Reading applies the chain until no upcaster matches.
"""

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_upcasters: dict[tuple[str, int], Upcaster] = {}


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Decorator: `fn(data)` turns `event_type` data of `from_version` into `from_version + 1`."""

    def decorate(fn: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _upcasters:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        _upcasters[key] = fn
        return fn

    return decorate


def unregister_upcaster(event_type: str, from_version: int) -> None:
    """Remove an upcaster (tests register temporary ones)."""
    _upcasters.pop((event_type, from_version), None)


def upcast_pending(event_type: str, schema_version: int) -> bool:
    """Whether data of this type and version is not in the current shape yet."""
    return (event_type, schema_version) in _upcasters


def upcast(event_type: str, schema_version: int, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Return (current version, data in the current shape)."""
    while (step := _upcasters.get((event_type, schema_version))) is not None:
        data = step(dict(data))
        schema_version += 1
    return schema_version, data
