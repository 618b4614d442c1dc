"""Domain errors of agent definitions; the API and admin turn them into 4xx answers."""

from dataclasses import dataclass


class AgentError(Exception):
    """Base class of every agent-domain error."""


@dataclass(frozen=True)
class DocumentProblem:
    """One thing wrong with a document: which field, what, and on which line (1-based) if known."""

    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.field}: {self.message}"


class DocumentInvalid(AgentError):
    """The document cannot be stored; `problems` says what and where."""

    def __init__(self, problems: list[DocumentProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))


class InvalidField(AgentError):
    """A request field beside the document is wrong (`dialect`, `name`): a 400 naming it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class AgentNotFound(AgentError):
    """No agent with that id, name or revision."""


class NameTaken(AgentError):
    """Another active agent already has this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"an active agent named {name!r} already exists")


class AgentArchived(AgentError):
    """The agent is archived: restore it before changing it."""


class StatusUnchanged(AgentError):
    """Archiving an archived agent, or restoring an active one."""


class InvalidCommand(AgentError):
    """The command does not make sense for the agent's state (e.g. restoring an active agent)."""


class InvalidReference(AgentError):
    """A revision reference that is not a number, `latest`, a label or `@timestamp`."""

    def __init__(self, ref: str, message: str) -> None:
        self.ref = ref
        super().__init__(f"{ref!r} {message}")
