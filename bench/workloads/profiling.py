"""Where the time goes: pyinstrument samples summarised for RESULTS.md, and queries counted per call.

Three views of one recording:

* by package (self time): PostgreSQL round trips show up as psycopg's waiting, Django's
  query building as django, parsing as yaml, and so on;
* this project's functions by inclusive time (a function counted once per stack, so
  recursion does not double it), which names the step that costs: the append lock, the
  state load, the hash, the inline projection catch-up...;
* the functions with the most self time, wherever they are.
"""

import re
import sysconfig
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("agents_app", "events", "project")
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def _package(path: str | None) -> str:
    """A short owner for a source file: the installed package, this project's app, or the stdlib module."""
    if not path:
        return "(native)"
    if "site-packages" in path:
        name = path.split("site-packages/", 1)[1].split("/", 1)[0]
        return name.removesuffix(".py").split("_binary")[0]
    resolved = Path(path)
    try:
        relative = resolved.resolve().relative_to(ROOT)
        return str(relative.parts[0]) if len(relative.parts) > 1 else relative.stem
    except (ValueError, OSError):
        pass
    try:
        return "stdlib:" + resolved.resolve().relative_to(STDLIB).parts[0].removesuffix(".py")
    except (ValueError, OSError):
        return resolved.name


def _label(frame) -> str:
    path = frame.file_path or ""
    try:
        path = str(Path(path).resolve().relative_to(ROOT))
    except (ValueError, OSError):
        path = _package(path) + ":" + Path(path).name
    function = f"{frame.class_name}.{frame.function}" if frame.class_name else frame.function
    return f"{function} ({path}:{frame.line_no})"


@dataclass
class Profile:
    """One pyinstrument recording and its summaries."""

    title: str
    seconds: float = 0.0
    calls: int = 0
    by_package: Counter = field(default_factory=Counter)
    own_inclusive: Counter = field(default_factory=Counter)
    self_time: Counter = field(default_factory=Counter)
    tree: str = ""

    @contextmanager
    def record(self, calls: int) -> Iterator[None]:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
        self.calls = calls
        session = profiler.last_session
        self.seconds = session.duration
        root = session.root_frame()
        if root is not None:
            self._walk(root, frozenset())
        self.tree = profiler.output_text(
            unicode=False,
            color=False,
            show_all=False,
            short_mode=False,
            processor_options={"filter_threshold": 0.02},
        )

    def _walk(self, frame, on_stack: frozenset) -> None:
        if frame.is_synthetic:
            for child in frame.children:
                self._walk(child, on_stack)
            return
        label = _label(frame)
        package = _package(frame.file_path)
        self.by_package[package] += frame.total_self_time
        self.self_time[label] += frame.total_self_time
        if package in PROJECT_PACKAGES and label not in on_stack and not frame.function.startswith("<"):
            self.own_inclusive[label] += frame.time
            on_stack = on_stack | {label}
        for child in frame.children:
            self._walk(child, on_stack)

    def markdown(self, top: int = 12) -> str:
        per_call = 1000 * self.seconds / max(self.calls, 1)
        lines = [
            f"### {self.title}",
            "",
            f"{self.seconds:.1f} s sampled over {self.calls:,} calls ({per_call:.2f} ms per call).",
            "",
            "Self time by package (psycopg's share is mostly waiting for PostgreSQL):",
            "",
            "| package | seconds | share |",
            "| --- | ---: | ---: |",
        ]
        total = sum(self.by_package.values()) or 1.0
        for package, seconds in self.by_package.most_common(8):
            lines.append(f"| {package} | {seconds:.2f} | {seconds / total:.0%} |")
        lines += [
            "",
            "This project's functions by inclusive time (the steps of the call):",
            "",
            "| function | seconds | share | ms per call |",
            "| --- | ---: | ---: | ---: |",
        ]
        for label, seconds in self.own_inclusive.most_common(top + 4):
            lines.append(
                f"| `{label}` | {seconds:.2f} | {seconds / total:.0%}"
                f" | {1000 * seconds / max(self.calls, 1):.2f} |"
            )
        lines += [
            "",
            "Functions with the most self time:",
            "",
            "| function | seconds | share |",
            "| --- | ---: | ---: |",
        ]
        for label, seconds in self.self_time.most_common(top):
            lines.append(f"| `{label}` | {seconds:.2f} | {seconds / total:.0%} |")
        lines += [
            "",
            "<details><summary>pyinstrument call tree</summary>",
            "",
            "```",
            self.tree.strip(),
            "```",
        ]
        lines += ["", "</details>", ""]
        return "\n".join(lines)


QUERY_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?([a-z_]+)"?', re.IGNORECASE)


def query_kind(sql: str) -> str:
    """`SELECT events_event`, `INSERT agents_app_agentrevision`, `BEGIN`, `SAVEPOINT`..."""
    verb = sql.split(None, 1)[0].upper() if sql.strip() else "?"
    if "pg_advisory_xact_lock" in sql:
        return "SELECT pg_advisory_xact_lock (append lock)"
    if verb in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        match = QUERY_TABLE.search(sql)
        return f"{verb} {match.group(1) if match else '?'}"
    if verb == "RELEASE":
        return "RELEASE SAVEPOINT"
    return verb


# Where one query sent several statements (a multi-statement query: the append lock with its
# reads, the checkpoint claim with the views' savepoint...): "; " before the next statement's verb.
STATEMENT_BREAK = re.compile(r";\s+(?=(?:SELECT|INSERT|UPDATE|DELETE|SAVEPOINT|WITH)\b)")


def count_queries(work, calls: int) -> tuple[float, float, Counter]:
    """Statements and round trips per call of `work` (run `calls` times), and statements by kind;
    BEGIN/COMMIT included. A multi-statement query is one round trip and counts each statement."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        for _ in range(calls):
            work()
    kinds: Counter = Counter()
    round_trips = 0
    for query in captured.captured_queries:
        round_trips += 1
        # Django logs an executemany as "<n> times: <sql>": n statements, sent as one pipeline.
        times, separator, sql = query["sql"].partition(" times: ")
        if separator and times.isdigit():
            kinds[query_kind(sql)] += int(times)
        else:
            for statement in STATEMENT_BREAK.split(query["sql"]):
                kinds[query_kind(statement)] += 1
    return (
        sum(kinds.values()) / calls,
        round_trips / calls,
        Counter({kind: n / calls for kind, n in kinds.items()}),
    )
