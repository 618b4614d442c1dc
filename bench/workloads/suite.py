"""The run's shared state: sizes, the systems (opened on the main database), results and notes."""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.workloads import common
from bench.workloads.common import Result
from bench.workloads.profiling import Profile
from bench.workloads.systems import EventSourcing, Raw, Reversion, SimpleHistory, ThisProject


@dataclass(frozen=True)
class Sizes:
    """How much each workload does; the full sizes are chosen to fit 10 minutes on 2 cores."""

    runs: int  # measured runs per figure, after one (shorter) warm-up round
    w1_edits: int  # sequential revisions per run
    w1_warmup: int
    w2_seconds: float  # each run: the writers edit for this long
    w2_warmup_seconds: float
    w2_processes: tuple[int, ...]
    w2_all_systems_up_to: int  # the peers and raw run W2 with at most this many writers
    w3_agents: int
    w3_revisions: int
    w4_calls: int  # diffs per run, per system
    w4_requests: int  # HTTP requests per run, per endpoint
    w4_warmup: int
    w5_depth: int  # revisions of the deep agent
    w5_calls: int  # reads per run, per system and revision
    w5_log_events: int  # events preloaded before the second append measurement
    w5_appends: int  # revisions appended per run
    w5_warmup: int
    w7_versions: int  # file versions in the replayed git history
    w7_files: int  # agent files that history changes in turn
    w7_agents: int  # files in the imported folder


FULL = Sizes(
    runs=3,
    w1_edits=500,
    w1_warmup=30,
    w2_seconds=2.0,
    w2_warmup_seconds=0.5,
    w2_processes=(8, 16),
    w2_all_systems_up_to=8,
    w3_agents=300,
    w3_revisions=20,
    w4_calls=40,
    w4_requests=120,
    w4_warmup=24,
    w5_depth=10_000,
    w5_calls=40,
    w5_log_events=1_000_000,
    w5_appends=25,
    w5_warmup=10,
    w7_versions=1_000,
    w7_files=20,
    w7_agents=1_000,
)

# Every code path once, in well under a minute; the figures mean nothing.
QUICK = Sizes(
    runs=1,
    w1_edits=5,
    w1_warmup=2,
    w2_seconds=0.3,
    w2_warmup_seconds=0.1,
    w2_processes=(2,),
    w2_all_systems_up_to=2,
    w3_agents=10,
    w3_revisions=3,
    w4_calls=3,
    w4_requests=16,
    w4_warmup=8,
    w5_depth=30,
    w5_calls=3,
    w5_log_events=5_000,
    w5_appends=3,
    w5_warmup=2,
    w7_versions=30,
    w7_files=5,
    w7_agents=20,
)


@dataclass
class Bench:
    sizes: Sizes
    profile: bool = True
    results: list[Result] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    profiles: list[Profile] = field(default_factory=list)
    # Per system: statements and round trips per revise, and the statements by kind.
    queries: dict[str, tuple[float, float, Counter]] = field(default_factory=dict)
    w1_handles: dict = field(default_factory=dict)  # system id -> the W1 agent, reused by W4 and W5
    w1_names: dict = field(default_factory=dict)
    w1_revisions: int = 0
    w5_depth: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ours = ThisProject()
        self.ours_off = ThisProject(read_your_writes=False)
        self.eventsourcing = EventSourcing(dbname=common.MAIN_DATABASE, **common.pg_parts())
        self.reversion = Reversion()
        self.history = SimpleHistory()
        self.raw = Raw(common.database_url(common.MAIN_DATABASE))

    def peers(self) -> list:
        return [self.eventsourcing, self.reversion, self.history]

    def all(self) -> list:
        return [self.ours, self.ours_off, *self.peers(), self.raw]

    def open(self) -> None:
        for system in self.all():
            system.open()

    def close(self) -> None:
        """Close every connection the systems hold (before a fork, and at the end)."""
        from django.db import connections

        for system in (self.eventsourcing, self.raw):
            system.close()
        connections.close_all()

    def add(self, result: Result) -> None:
        self.results.append(result)
        runs = ", ".join(f"{value:,.4g}" for value in result.values)
        note = f" {result.note}" if result.note else ""
        print(
            f"  {result.workload} | {result.system}: {result.median:,.4g} {result.unit} (runs {runs}){note}",
            flush=True,
        )

    def note(self, workload: str, text: str) -> None:
        self.notes.setdefault(workload, []).append(text)


def rounds(runs: int) -> Iterator[tuple[int, bool]]:
    """(round number, is warm-up): one warm-up round, then `runs` measured ones."""
    for number in range(runs + 1):
        yield number, number == 0


def rotated(items: list, turn: int) -> list:
    """The systems in a different order each round, so that drift on a shared machine hits all alike."""
    turn %= len(items)
    return items[turn:] + items[:turn]
