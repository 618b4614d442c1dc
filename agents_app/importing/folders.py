"""Import of agent definition files and folders: create or revise an agent per file."""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from agents_app.dialects import dialect_of_file
from agents_app.document import agent_name, parse_agent_document
from agents_app.exceptions import AgentError, DocumentInvalid, InvalidField, NameTaken
from agents_app.importing.batches import BATCH_UNITS, bulk_writes, dry_run_writes
from agents_app.importing.files import agent_file_has_frontmatter, agent_file_read, agent_files_find
from agents_app.importing.outcomes import (
    CREATED,
    NOT_AGENT_FILE,
    REVISED,
    SKIPPED,
    UNCHANGED,
    FileOutcome,
    FileReport,
    ImportTotals,
    Progress,
    failure,
    report_nothing,
)
from agents_app.models import AgentNameClaim
from agents_app.services import MAX_REASON, ChangeContext, agent_create, agent_revise
from events.services import append_lock


@dataclass(frozen=True)
class _Parsed:
    """A file read and parsed before any lock: its bytes, dialect and name."""

    path: Path
    content: bytes
    dialect: str
    file_name: str
    given: str | None  # the name taken from the file name, for a document without one
    name: str


def _prepare(path: Path, names_seen: dict[str, str]) -> _Parsed | FileOutcome:
    """Read and parse one file (no database): what _import_file writes, or the outcome of a file it cannot."""
    shown = str(path)
    try:
        content = agent_file_read(path)
    except OSError as exc:
        return failure(shown, f"cannot read: {exc.strerror or exc}")
    if not agent_file_has_frontmatter(content):
        return FileOutcome(SKIPPED, shown, detail=NOT_AGENT_FILE, routine=True)
    # `x.agent.md` is a copilot agent, named `x` when its frontmatter has no name; `x.md` Claude Code's.
    dialect, file_name = dialect_of_file(path.name)
    try:
        document = parse_agent_document(content, dialect=dialect)
        given = None if document.name else file_name
        name = agent_name(document, given=given, given_as="the file name")
    except (DocumentInvalid, InvalidField) as exc:
        return failure(shown, str(exc))
    if name in names_seen:
        # Two files of one run naming the same agent would silently overwrite each other.
        return failure(shown, f"the name {name!r} is also the name in {names_seen[name]}", name)
    names_seen[name] = shown
    return _Parsed(path, content, dialect, file_name, given, name)


def _names_held(files: Sequence[_Parsed | FileOutcome]) -> set[str]:
    """Which of the files' names an agent holds now: one query for a chunk of files.

    Read without the lock, so only a hint of which write to try first (_import_file): a name
    taken or freed after this read is found out under the lock all the same.
    """
    names = [file.name for file in files if isinstance(file, _Parsed)]
    return set(AgentNameClaim.objects.filter(name__in=names).values_list("name", flat=True))


def _import_file(file: _Parsed, context: ChangeContext, *, held: bool, only_new: bool) -> FileOutcome:
    shown, name = str(file.path), file.name
    note = "" if file.file_name == name else f"the file name differs from the name {name!r}"
    create = functools.partial(
        agent_create,
        content=file.content,
        context=context,
        dialect=file.dialect,
        name=file.given,
        name_from="the file name",
    )
    try:
        if not held:
            # A name no agent held a moment ago (the common case: new files): create straight
            # away. agent_create claims the name under the append lock, and if a writer took it
            # since our look, it raises NameTaken having stored nothing: we then do what a
            # file whose name is held does.
            try:
                change = create()
            except NameTaken:
                pass
            else:
                return FileOutcome(CREATED, shown, name=name, revision=change.revision, detail=note)
        with transaction.atomic():
            # Look up and write under one append lock: without it, another writer creating
            # this name between our lookup and our create would fail this file with NameTaken.
            append_lock()
            holder = AgentNameClaim.objects.filter(name=name).values_list("agent_id", flat=True).first()
            if holder is not None and only_new:
                return FileOutcome(SKIPPED, shown, name=name, detail=f"agent {name!r} exists (--only-new)")
            if holder is None:
                change = create()
            else:
                change = agent_revise(
                    agent_id=holder, content=file.content, context=context, dialect=file.dialect
                )
    except AgentError as exc:
        return failure(shown, str(exc), name)
    action = CREATED if holder is None else REVISED if change.changed else UNCHANGED
    return FileOutcome(action, shown, name=name, revision=change.revision, detail=note)


def agents_import(
    *,
    paths: Sequence[Path],
    actor: str,
    reason: str = "",
    exclude: Sequence[str] = (),
    only_new: bool = False,
    dry_run: bool = False,
    report: FileReport = report_nothing,
    progress: Progress | None = None,
) -> ImportTotals:
    """Create or revise an agent from each file; identical content stores nothing, nor does a bad file.

    Files without frontmatter are skipped (not agent files); `exclude` globs leave files out;
    `only_new` skips files whose name an agent has; `dry_run` does it all and stores nothing.
    """
    ChangeContext(actor=actor, source="import", reason=reason).metadata()  # bad actor/reason: refuse all
    files, skipped = agent_files_find(paths=paths, exclude=exclude)
    totals = ImportTotals()
    names_seen: dict[str, str] = {}
    writes = dry_run_writes() if dry_run else bulk_writes()
    with writes as batches:
        for outcome in skipped:
            totals.add(outcome)
            report(outcome)
        if progress is not None:
            progress(0, len(files))
        done = 0
        for chunk in (files[start : start + BATCH_UNITS] for start in range(0, len(files), BATCH_UNITS)):
            # A chunk is read and parsed first, outside any write, and the names its files
            # want looked up in one query: per file, that lookup was a savepoint, the append
            # lock and a read before agent_create took the lock and read the claim again.
            prepared = [_prepare(path, names_seen) for path in chunk]
            held = _names_held(prepared)
            for file in prepared:
                if isinstance(file, FileOutcome):
                    outcome = file
                else:
                    context = ChangeContext(
                        actor=actor,
                        source="import",
                        reason=reason or f"import of {file.path}"[:MAX_REASON],
                        extra={"import_path": str(file.path)},
                    )
                    outcome = _import_file(file, context, held=file.name in held, only_new=only_new)
                batches.unit_done()
                totals.add(outcome)
                if outcome.action == REVISED and outcome.revision is not None:
                    # A file revises only an agent that existed before the run: two files of
                    # one run with the same name fail the second (names_seen).
                    totals.revised_existing[outcome.name] = outcome.revision
                report(outcome)
                done += 1
                if progress is not None:
                    progress(done, len(files))
    return totals
