"""What a label name may be: one rule for the commands, the reads of `?ref=`, the API and the admin."""

import re

LABEL_PATTERN = re.compile(r"[a-z][a-z0-9._-]{0,63}")
RESERVED_LABELS = frozenset({"latest"})  # `latest` is a ref of its own: a label would shadow it
LABEL_RULE = (
    "must be lowercase letters, digits, '.', '_' or '-', starting with a letter, at most 64"
    " characters, and not 'latest'"
)


def label_error(label: str) -> str | None:
    """What is wrong with a label name to be set, or None if it may be used."""
    if LABEL_PATTERN.fullmatch(label) and label not in RESERVED_LABELS:
        return None
    return f"{LABEL_RULE}; got {label!r}"
