"""Fixtures of the event store tests: toy projections registered for the length of a test."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from events.projections import projection_register, projection_unregister
from tests.events.toy import ToyProjection, toy_table_create, toy_table_drop


@dataclass
class Toys:
    tally: ToyProjection  # counts every toy event
    fragile: ToyProjection  # the same, but raises on events marked bad (a projection with a bug)


def _registered() -> Iterator[Toys]:
    toy_table_create()
    toys = Toys(tally=ToyProjection("toy.tally"), fragile=ToyProjection("toy.fragile", refuse_bad=True))
    for toy in (toys.tally, toys.fragile):
        projection_register(toy)
    try:
        yield toys
    finally:
        for toy in (toys.tally, toys.fragile):
            projection_unregister(toy.name)


@pytest.fixture
def toys(db) -> Iterator[Toys]:
    """Two toy projections; their table is created in the test's transaction and goes with it."""
    yield from _registered()


@pytest.fixture
def toys_committed(transactional_db) -> Iterator[Toys]:
    """Two toy projections for tests whose threads need committed rows; the table is dropped after."""
    try:
        yield from _registered()
    finally:
        toy_table_drop()
