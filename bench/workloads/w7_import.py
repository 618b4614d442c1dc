"""W7 imports: a git history replay and a folder import, files per second (issue 14: >= 1,000).

Both through the commands people run (`import_git_history`, `import_agents`), in this process,
on the main database after W1-W6 (so into a registry that already holds their histories).
The repository is built with `git fast-import` (bench.import_rates.build_repository): each
commit changes one of `w7_files` agent files, `w7_versions` commits in all. The folder holds
`w7_agents` new agent files. Each run uses new agent names, so every run stores everything
again; building the repository and writing the files are not timed. Peers have no importer:
the figures stand against issue 14's absolute target, and `python -m bench.import_rates`
gives the same measurement on SQLite too.
"""

import io
import tempfile
from pathlib import Path

from django.core.management import call_command

from bench.import_rates import build_repository, document
from bench.workloads.common import Result, timed
from bench.workloads.suite import Bench, rounds

REPLAY = "W7 git replay (file versions/s)"
FOLDER = "W7 folder import (files/s)"


def run(bench: Bench) -> None:
    sizes = bench.sizes
    values: dict[str, list[float]] = {REPLAY: [], FOLDER: []}
    for number, warmup in rounds(sizes.runs):
        prefix = f"w7-{'warmup' if warmup else 'run'}-{number}"
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(temporary)
            repo = folder / "repo"
            versions = sizes.w7_versions // 10 if warmup else sizes.w7_versions
            build_repository(repo, versions=versions, files=sizes.w7_files, prefix=f"{prefix}-git")
            replay = timed(lambda r=repo: call_command("import_git_history", str(r), stdout=io.StringIO()))
            agents = folder / "agents"
            agents.mkdir()
            files = sizes.w7_agents // 10 if warmup else sizes.w7_agents
            for index in range(files):
                name = f"{prefix}-file-{index:05d}"
                (agents / f"{name}.md").write_bytes(document(name, 0))
            imported = timed(lambda a=agents: call_command("import_agents", str(a), stdout=io.StringIO()))
        if not warmup:
            values[REPLAY].append(versions / replay)
            values[FOLDER].append(files / imported)
    for workload, measured in values.items():
        bench.add(Result(workload, bench.ours.label, "files/s", measured, True, reference=True))
    bench.note(
        "W7 imports",
        f"`import_git_history` of a repository of {sizes.w7_versions:,} commits, each changing one of"
        f" {sizes.w7_files} agent files (~2.4 KB), and `import_agents` of a folder of"
        f" {sizes.w7_agents:,} new files; each run with new names, in this process against the main"
        " database, Celery as deployed (read-your-writes on). Target (issue 14): >= 1,000 files per"
        " second for both.",
    )
