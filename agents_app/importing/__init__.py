"""Import and export of agent definition files, and replay of a git repository's history.

`files` finds, reads and writes agent files; `folders` imports files and folders; `export`
writes the agents out; `git` replays a repository's history; `batches` holds the batched
transactions of bulk runs; `outcomes` what happened to each file. The names the management
commands and tests use are re-exported here.
"""

from agents_app.importing.batches import BATCH_SECONDS, BATCH_UNITS, WriteBatches, bulk_writes
from agents_app.importing.export import agents_export
from agents_app.importing.files import agent_file_path, agent_file_read, agent_file_write, agent_files_find
from agents_app.importing.folders import agents_import
from agents_app.importing.git import (
    DEFAULT_GIT_GLOB,
    GitImportResult,
    GitRepositoryError,
    git_commits,
    git_commits_imported,
    git_create_event_id,
    git_history_import,
    git_newest_imported,
    git_root_commit,
)
from agents_app.importing.outcomes import (
    ARCHIVED,
    CREATED,
    FAILED,
    RESTORED,
    REVISED,
    SKIPPED,
    UNCHANGED,
    WRITTEN,
    ExportTotals,
    FileOutcome,
    ImportRefused,
    ImportTotals,
)

__all__ = [
    "ARCHIVED",
    "BATCH_SECONDS",
    "BATCH_UNITS",
    "CREATED",
    "DEFAULT_GIT_GLOB",
    "FAILED",
    "RESTORED",
    "REVISED",
    "SKIPPED",
    "UNCHANGED",
    "WRITTEN",
    "ExportTotals",
    "FileOutcome",
    "GitImportResult",
    "GitRepositoryError",
    "ImportRefused",
    "ImportTotals",
    "WriteBatches",
    "agent_file_path",
    "agent_file_read",
    "agent_file_write",
    "agent_files_find",
    "agents_export",
    "agents_import",
    "bulk_writes",
    "git_commits",
    "git_commits_imported",
    "git_create_event_id",
    "git_history_import",
    "git_newest_imported",
    "git_root_commit",
]
