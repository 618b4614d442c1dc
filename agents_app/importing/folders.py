"""Import of agent definition files and folders: create or revise an agent per file."""

from collections.abc import Sequence
from pathlib import Path

from django.db import transaction

from agents_app.dialects import dialect_of_file
from agents_app.document import agent_name, parse_agent_document
from agents_app.exceptions import AgentError, DocumentInvalid, InvalidField
from agents_app.importing.batches import bulk_writes, dry_run_writes
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


def _import_file(
    path: Path, context: ChangeContext, names_seen: dict[str, str], *, only_new: bool
) -> FileOutcome:
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
    try:
        with transaction.atomic():
            # Look up and write under one append lock: without it, another writer creating
            # this name between our lookup and our create would fail this file with NameTaken.
            append_lock()
            holder = AgentNameClaim.objects.filter(name=name).values_list("agent_id", flat=True).first()
            if holder is not None and only_new:
                return FileOutcome(SKIPPED, shown, name=name, detail=f"agent {name!r} exists (--only-new)")
            if holder is None:
                change = agent_create(
                    content=content, context=context, dialect=dialect, name=given, name_from="the file name"
                )
            else:
                change = agent_revise(agent_id=holder, content=content, context=context, dialect=dialect)
    except AgentError as exc:
        return failure(shown, str(exc), name)
    action = CREATED if holder is None else REVISED if change.changed else UNCHANGED
    note = "" if file_name == name else f"the file name differs from the name {name!r}"
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
        for done, path in enumerate(files, start=1):
            context = ChangeContext(
                actor=actor,
                source="import",
                reason=reason or f"import of {path}"[:MAX_REASON],
                extra={"import_path": str(path)},
            )
            outcome = _import_file(path, context, names_seen, only_new=only_new)
            batches.unit_done()
            totals.add(outcome)
            if outcome.action == REVISED and outcome.revision is not None:
                # A file revises only an agent that existed before the run: two files of
                # one run with the same name fail the second (names_seen).
                totals.revised_existing[outcome.name] = outcome.revision
            report(outcome)
            if progress is not None:
                progress(done, len(files))
    return totals
