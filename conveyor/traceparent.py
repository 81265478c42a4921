"""W3C Trace Context `traceparent` values, checked without OpenTelemetry: the REST API
stores a request's header with its task whether or not tracing is installed."""

from __future__ import annotations

import re
from contextvars import ContextVar

#: version, trace id, parent (span) id, flags: lowercase hex, as the recommendation says
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
#: the length of the four fields of version 00 (later versions may append more)
_LENGTH = 55
#: longer values are refused rather than stored (a header is the caller's to size)
MAX_LENGTH = 512
#: The `traceparent` of the execution span current in this context, which a tracing
#: middleware sets: a process handler's child continues it, so the spans made there are
#: children of the execution span, which lives in the worker.
EXECUTION: ContextVar[str | None] = ContextVar("conveyor_execution_traceparent", default=None)


def valid_traceparent(value: str | None) -> str | None:
    """`value` if it is a valid `traceparent` (the four fields of a later version than
    00), else None: an invalid one is ignored, as the recommendation asks of a receiver."""
    if value is None or len(value) > MAX_LENGTH:
        return None
    value = value.strip()
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, _ = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    if version == "00":
        return value if len(value) == _LENGTH else None
    # a later version: its four fields are understood if a dash or the end follows them
    return value[:_LENGTH] if len(value) == _LENGTH or value[_LENGTH] == "-" else None
