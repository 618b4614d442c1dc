"""Running test code in real threads that start together (for the concurrency tests)."""

import threading
from collections.abc import Callable

from django.db import connection

TIMEOUT = 60.0


def run_threads(targets: list[Callable[[], object]]) -> list[object]:
    """Start every target at once (a barrier), wait for all; re-raise the first unexpected error."""
    barrier = threading.Barrier(len(targets))
    results: list[object] = [None] * len(targets)

    def run(index: int, target: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=TIMEOUT)
            results[index] = target()
        except BaseException as exc:  # handed to the main thread, which asserts on it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, target)) for i, target in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
        assert not thread.is_alive(), "a thread did not finish in time"
    return results
