"""Bulk runs: batched transactions without the per-write read-your-writes wait.

Bulk runs write in batched transactions and bring the projections up to date once at the
end (`bulk_writes`): the views are current when a run returns.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import transaction

from events.runner import after_commit_deferred, projections_wait, read_your_writes
from events.selectors import head_position
from events.services import append_lock

# A bulk run commits its transaction after this many files or git commits, or this many seconds.
BATCH_UNITS = 200
BATCH_SECONDS = 0.5


class WriteBatches:
    """The open transaction of a bulk run, committed every BATCH_UNITS files or commits or BATCH_SECONDS."""

    def __init__(
        self,
        on_open: Callable[[], None] | None = None,
        after_commit: Callable[[], None] | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self._atomic: transaction.Atomic | None = None
        self._after_commit = after_commit
        # Writes of the whole batch, made last in its transaction (a replay's commit records).
        self._before_commit = before_commit
        self._units = 0
        self._opened = 0.0
        self._on_open = on_open

    def open(self) -> None:
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self._units = 0
        self._opened = time.monotonic()
        if self._on_open is not None:
            append_lock()  # what on_open checks cannot change before this batch commits
            self._on_open()

    def close(self, error: BaseException | None = None) -> None:
        """Commit the open batch, or roll it back when `error` is given."""
        atomic, self._atomic = self._atomic, None
        if atomic is not None:
            if error is None and self._before_commit is not None:
                try:
                    self._before_commit()
                except BaseException as exc:
                    atomic.__exit__(type(exc), exc, exc.__traceback__)
                    raise
            atomic.__exit__(type(error) if error else None, error, error.__traceback__ if error else None)
            if error is None and self._after_commit is not None:
                self._after_commit()

    def unit_done(self) -> None:
        """One file or commit is written; commit the batch if it is big or old enough."""
        self._units += 1
        if self._units >= BATCH_UNITS or time.monotonic() - self._opened >= BATCH_SECONDS:
            self.close()
            self.open()


@contextmanager
def bulk_writes(
    *, on_open: Callable[[], None] | None = None, before_commit: Callable[[], None] | None = None
) -> Iterator[WriteBatches]:
    """Batched transactions, no read-your-writes waits; the projections are brought up to date at the end."""
    # Each commit queues a projection catch-up (in the embedded mode it runs right there, in
    # process) and, with read-your-writes on, waits for it: per file or git commit that
    # tripled an import's time. Batches of units share one COMMIT and one catch-up of all
    # their events. The append lock is held until a batch commits, so other writers wait at
    # most about BATCH_SECONDS. A batch is stored entirely or not at all, which is what lets
    # a re-run tell exactly which commits were imported. Read-your-writes is turned off for
    # this thread only (the runner's context switch): an import run from a web request must
    # not turn it off for the other requests the process serves meanwhile. The appends'
    # after-commit work (a catch-up queued per event) is done once per batch instead
    # (after_commit_deferred).
    with read_your_writes(False), after_commit_deferred() as flush:
        batches = WriteBatches(on_open, after_commit=flush, before_commit=before_commit)
        try:
            batches.open()
            yield batches
        except BaseException as exc:
            batches.close(exc)
            raise
        else:
            batches.close()
    projections_wait(position=head_position())


@contextmanager
def dry_run_writes(
    *, on_open: Callable[[], None] | None = None, before_commit: Callable[[], None] | None = None
) -> Iterator[WriteBatches]:
    """Like bulk_writes, but everything is written in one transaction that is rolled back at the end.

    A dry run goes through the real services, so it validates exactly as a real run would,
    and later files or commits see what earlier ones would have stored (a replay revises the
    agent its first commit created; a name taken earlier in the run is taken). Inside the
    outer transaction the batches are savepoints: nothing commits, so no on_commit hook runs
    (no projection catch-up is queued) and nothing is left behind. The price: the append
    lock, taken by the first write, is held until the rollback, so other writers wait for
    the whole dry run instead of one batch (seconds for a thousand files). Read-your-writes
    is off as in bulk_writes: nothing reads the views during a run, and nothing it would
    bring them up to survives.
    """
    with read_your_writes(False), transaction.atomic():
        batches = WriteBatches(on_open, before_commit=before_commit)
        batches.open()
        try:
            yield batches
        except BaseException as exc:
            batches.close(exc)
            raise
        else:
            batches.close()
        finally:
            transaction.set_rollback(True)
