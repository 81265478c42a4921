"""JSON encoding of payloads and results (orjson: fast, strict about what JSON can hold)."""

from __future__ import annotations

from typing import Any

import orjson

from conveyor.errors import SerializationError


def dumps(value: Any) -> bytes:
    """Encode `value` as JSON, or raise SerializationError naming what could not be encoded."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise SerializationError(f"not JSON-serializable: {exc}") from None


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises SerializationError on corrupt input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SerializationError(f"invalid JSON: {exc}") from None
