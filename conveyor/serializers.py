"""JSON encoding of payloads and results (orjson: fast, strict about what JSON can hold)."""

from __future__ import annotations

import math
from typing import Any

import orjson

from conveyor.errors import SerializationError


def dumps(value: Any) -> bytes:
    """Encode `value` as JSON, or raise SerializationError naming what could not be encoded.

    NaN and the infinities are refused: JSON cannot hold them, and orjson would quietly
    write null (the check only runs when the output holds a null at all).
    """
    try:
        data = orjson.dumps(value)
    except TypeError as exc:
        raise SerializationError(f"not JSON-serializable: {exc}") from None
    if b"null" in data and _has_non_finite(value):
        raise SerializationError("not JSON-serializable: NaN and Infinity have no JSON form")
    return data


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises SerializationError on corrupt input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SerializationError(f"invalid JSON: {exc}") from None
