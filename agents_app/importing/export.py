"""Export: `<name>.md` (copilot: `<name>.agent.md`) with the exact stored bytes of each agent's revision."""

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

from agents_app.dialects import file_name_of
from agents_app.exceptions import AgentNotFound
from agents_app.importing.files import agent_file_path, agent_file_write
from agents_app.importing.outcomes import (
    SKIPPED,
    WRITTEN,
    ExportTotals,
    FileOutcome,
    FileReport,
    ImportRefused,
    failure,
    report_nothing,
)
from agents_app.models import AgentCurrent
from agents_app.selectors import agents_current, parse_ref, registry_at, revision_resolve
from events.runner import projections_wait
from events.selectors import head_position


@dataclass(frozen=True)
class _ExportItem:
    agent_id: uuid.UUID
    name: str
    revision: int
    content: str
    archived: bool
    dialect: str

    @property
    def file_name(self) -> str:
        return file_name_of(self.name, self.dialect)


def _export_items(
    *, ref: str | None, at: dt.datetime | None, include_archived: bool, report: FileReport
) -> list[_ExportItem]:
    if at is not None:
        registry = registry_at(at=at)
        rows = registry.rows if include_archived else registry.active()
        return [
            _ExportItem(
                row.agent_id,
                row.name,
                row.revision,
                row.content,
                row.agent_id in registry.archived,
                row.dialect,
            )
            for row in rows.iterator(chunk_size=500)
        ]
    agents = agents_current()
    if not include_archived:
        agents = agents.filter(status=AgentCurrent.Status.ACTIVE)
    items = []
    for agent in agents.order_by("name", "agent_id").iterator(chunk_size=500):
        archived = agent.status == AgentCurrent.Status.ARCHIVED
        if ref is None:
            items.append(
                _ExportItem(
                    agent.agent_id, agent.name, agent.revision, agent.content, archived, agent.dialect
                )
            )
            continue
        try:
            row = revision_resolve(agent=agent, ref=ref)
        except AgentNotFound as exc:
            shown = file_name_of(agent.name, agent.dialect)
            report(FileOutcome(SKIPPED, shown, name=agent.name, detail=str(exc)))
            continue
        items.append(_ExportItem(agent.agent_id, row.name, row.revision, row.content, archived, row.dialect))
    return items


def agents_export(
    *,
    directory: Path,
    ref: str | None = None,
    at: dt.datetime | None = None,
    include_archived: bool = False,
    report: FileReport = report_nothing,
) -> ExportTotals:
    """Write `<name>.md` (copilot: `<name>.agent.md`) with the exact stored bytes of each agent's
    revision: latest, `ref` or as at `at`."""
    if ref is not None and at is not None:
        raise ImportRefused("give --ref or --at, not both")
    if ref is not None:
        parse_ref(ref)  # an unreadable reference is the caller's mistake, not 1,000 skipped agents
    if directory.exists() and not directory.is_dir():
        raise ImportRefused(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    # The export reflects every event stored before it started, even if a worker lags.
    projections_wait(position=head_position())
    totals = ExportTotals()
    written: dict[str, uuid.UUID] = {}  # file name -> agent

    def counted(outcome: FileOutcome) -> None:
        totals.add(outcome)
        report(outcome)

    items = _export_items(ref=ref, at=at, include_archived=include_archived, report=counted)
    # Active agents first: an archived agent may share its name with the active one.
    for item in sorted(items, key=lambda item: (item.archived, item.name)):
        shown = item.file_name
        if shown in written:
            outcome = FileOutcome(
                SKIPPED,
                shown,
                name=item.name,
                detail=f"agent {item.agent_id} has the name of agent {written[shown]}, written already",
            )
        else:
            try:
                target = agent_file_path(directory=directory, name=item.name, dialect=item.dialect)
                agent_file_write(target, item.content)
            except (ImportRefused, OSError) as exc:
                outcome = failure(shown, getattr(exc, "strerror", None) or str(exc), item.name)
            else:
                written[shown] = item.agent_id
                detail = "archived" if item.archived else ""
                outcome = FileOutcome(WRITTEN, shown, name=item.name, revision=item.revision, detail=detail)
        counted(outcome)
    return totals
