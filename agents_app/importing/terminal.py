"""What the import commands keep off the terminal while they run."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

# Loggers that write one line per projection catch-up: Celery's eager task trace ("Task
# events.tasks.projections_catch_up[...] succeeded in ...") runs once per committed batch,
# hundreds of times in a replay. Their warnings and errors still show.
CHATTY_LOGGERS = ("celery.app.trace",)


@contextmanager
def chatty_logs_quiet(*, verbosity: int = 1) -> Iterator[None]:
    """Raise the chatty loggers to WARNING for the command's run: the terminal is for the
    progress bar and the summary (`-v 3` keeps them). Levels are put back afterwards (tests
    call commands in one process)."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS] if verbosity < 3 else []
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
