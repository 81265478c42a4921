"""How the CLI prints what it reads: JSON, with every time as ISO 8601 UTC ending in Z.

One format for every time the CLI prints (`2026-12-06T23:42:58.123Z`): millisecond
precision, as the scripts store times, and `Z` rather than `+00:00`. Records carry
datetimes; worker descriptions carry epoch seconds in their `*_at` fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from conveyor import serializers
from conveyor.model import Attempt, TaskRecord

#: The suffix of the fields of a worker's description (and queue stats) that are times.
TIME_SUFFIX = "_at"


def utc(moment: datetime | float) -> str:
    """`2026-12-06T23:42:58.123Z`, from an aware datetime or epoch seconds."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_json(record: TaskRecord) -> dict[str, Any]:
    """A task record as `conveyor status` and `conveyor dlq show` print it."""
    out = _times(record, record.to_json())
    out["history"] = [_times(attempt, attempt.to_json()) for attempt in record.history]
    return out


def described(info: dict[str, Any]) -> dict[str, Any]:
    """A worker's description (or queue stats): its `*_at` epoch numbers as times."""
    return {
        key: utc(value)
        if key.endswith(TIME_SUFFIX) and isinstance(value, int | float) and value > 0
        else value
        for key, value in info.items()
    }


def dumps(value: Any) -> str:
    """One line of JSON."""
    return serializers.dumps(value).decode()


def _times(source: TaskRecord | Attempt, out: dict[str, Any]) -> dict[str, Any]:
    """Replace the fields of `out` that are datetimes in `source` (never args or results)."""
    for name in source.__slots__:
        value = getattr(source, name)
        if isinstance(value, datetime):
            out[name] = utc(value)
    return out
