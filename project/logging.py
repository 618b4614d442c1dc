"""Log lines that tie a web request to the Celery tasks it caused.

The log context (request id, correlation id, and the task id and name inside a Celery task)
lives in a contextvar: RequestIdMiddleware binds it for each request, project/celery.py
carries it into task headers when a task is queued and binds it again in the worker while
the task runs. `LogContextFilter` copies it onto every record; `JsonFormatter` writes one
JSON object per line (for log shippers), `TextFormatter` a readable line (for terminals).
`logging_config()` is the one dictConfig used by Django (settings.LOGGING), gunicorn
(project/gunicorn.conf.py) and Celery (the setup_logging signal), so every process of the
stack logs the same way.

Nothing here imports Django: settings.py imports this module.
"""

import contextvars
import datetime as dt
import json
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# request_id, correlation_id, task_id, task_name; absent keys are logged as null.
CONTEXT_FIELDS = ("request_id", "correlation_id", "task_id", "task_name")
LOG_FORMATS = ("json", "text")

# The default is never mutated: binding always sets a new mapping.
_NOTHING: Mapping[str, str] = MappingProxyType({})
_log_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_context", default=_NOTHING
)


def log_context() -> Mapping[str, str]:
    """The ids bound in the current request or task (empty outside both)."""
    return _log_context.get()


def log_context_bind(**fields: str | None) -> contextvars.Token:
    """Add ids to the log context until `log_context_reset(token)`; None values are ignored."""
    merged = {**_log_context.get(), **{key: value for key, value in fields.items() if value}}
    return _log_context.set(merged)


def log_context_reset(token: contextvars.Token) -> None:
    _log_context.reset(token)


class LogContextFilter(logging.Filter):
    """Copy the log context onto the record (an explicit `extra={"request_id": ...}` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _log_context.get()
        for key in CONTEXT_FIELDS:
            if getattr(record, key, None) is None:
                setattr(record, key, context.get(key))
        return True


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_SCALARS = (str, int, float, bool, type(None))


def _access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """gunicorn's access-log atoms (record.args of `gunicorn.access`) as named fields.

    The request id comes from the response header: the access line is written after the
    response, when the request's log context is already gone.
    """
    return {
        "request_id": atoms.get("{x-request-id}o") if atoms.get("{x-request-id}o") != "-" else None,
        "http": {
            "method": atoms.get("m"),
            "path": atoms.get("U"),
            "query": atoms.get("q") or None,
            "status": int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s"),
            "bytes": atoms.get("B"),
            "duration_ms": round(atoms["D"] / 1000, 3) if isinstance(atoms.get("D"), int) else None,
            "remote_addr": atoms.get("h"),
            "user_agent": atoms.get("a") if atoms.get("a") != "-" else None,
            "protocol": atoms.get("H"),
        },
    }


def _is_access_record(record: logging.LogRecord) -> bool:
    return record.name == "gunicorn.access" and isinstance(record.args, Mapping)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the log context, exc_info, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key in CONTEXT_FIELDS:
            entry[key] = getattr(record, key, None)
        if _is_access_record(record):
            access = _access_fields(record.args)  # type: ignore[arg-type]
            entry["request_id"] = entry["request_id"] or access["request_id"]
            entry["http"] = access["http"]
            http = access["http"]
            entry["message"] = f"{http['method']} {http['path']} {http['status']}"
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in entry and isinstance(value, _SCALARS):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request=... task=...] message`, for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(context)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        if request_id is None and _is_access_record(record):
            request_id = _access_fields(record.args)["request_id"]  # type: ignore[arg-type]
        parts = [f"request={request_id}"] if request_id else []
        if task_name := getattr(record, "task_name", None):
            parts.append(f"task={task_name}[{getattr(record, 'task_id', None)}]")
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The dictConfig of every process: one stderr handler on the root logger, `log_format` lines."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}; got {log_format!r}")
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"log_context": {"()": LogContextFilter}},
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"()": TextFormatter},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["log_context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's defaults attach their own handlers (a DEBUG-only console, mail_admins):
            # drop them so each line is written once, by the root handler, in our format.
            "django": {"handlers": [], "level": level, "propagate": True},
            # gunicorn configures these loggers itself; gunicorn.conf.py gives it this same
            # config, and saying it here keeps Django's setup in each worker from undoing it.
            "gunicorn.error": {"handlers": [], "level": level, "propagate": True},
            "gunicorn.access": {"handlers": [], "level": "INFO", "propagate": True},
        },
    }
