"""How the CLI prints what it reads: JSON, with every time as ISO 8601 UTC ending in Z.

One format for every time the CLI prints (`2026-12-06T23:42:58.123Z`): millisecond
precision, as the scripts store times, and `Z` rather than `+00:00` (`model.utc_iso`, which
records use too); worker descriptions carry epoch seconds in their `*_at` fields.
"""

from __future__ import annotations

from typing import Any

from conveyor import serializers
from conveyor.model import utc_iso

#: The suffix of the fields of a worker's description (and queue stats) that are times.
TIME_SUFFIX = "_at"


def described(info: dict[str, Any]) -> dict[str, Any]:
    """A worker's description (or queue stats): its `*_at` epoch numbers as times."""
    return {
        key: utc_iso(value)
        if key.endswith(TIME_SUFFIX) and isinstance(value, int | float) and value > 0
        else value
        for key, value in info.items()
    }


def dumps(value: Any) -> str:
    """One line of JSON."""
    return serializers.dumps(value).decode()
