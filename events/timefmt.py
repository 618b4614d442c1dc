"""The one way the admin writes an instant: "2026-12-07 14:50:07 UTC" (to the second, with its zone).

The API writes ISO 8601 with `Z` (DRF's DateTimeField); people reading the admin get this
form on every page, so that two times on one screen compare at a glance.
"""

import datetime as dt

READABLE = "%Y-%m-%d %H:%M:%S"


def readable(instant: dt.datetime | None) -> str:
    """The instant in UTC, to the second, with the zone; "" for none."""
    if instant is None:
        return ""
    if instant.tzinfo is None:  # a naive value is UTC here (USE_TZ, TIME_ZONE = "UTC")
        instant = instant.replace(tzinfo=dt.UTC)
    return f"{instant.astimezone(dt.UTC):{READABLE}} UTC"


def iso(instant: dt.datetime) -> str:
    """The instant as the API writes it: ISO 8601 in UTC with `Z`, as DRF's DateTimeField does."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    text = instant.astimezone(dt.UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def iso_from_json(text: str) -> str:
    """`iso` of a UTC timestamp as PostgreSQL's JSON writes it ("2026-12-07T14:50:07.12"):
    the same text without building a datetime (PostgreSQL drops trailing zeros of the
    fraction; Python writes six digits whenever there is one)."""
    seconds, dot, fraction = text.partition(".")
    return f"{seconds}.{fraction.ljust(6, '0')}Z" if dot else f"{seconds}Z"
