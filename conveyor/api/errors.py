"""Every error is JSON of one shape, `{"error": {"code", "message", "details"}}`, with the
right status; no traceback ever reaches a client."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.errors import (
    BrokerFullError,
    BrokerUnavailableError,
    ConfigurationError,
    ConveyorError,
    CorruptRecordError,
    NotReplicatedError,
    SerializationError,
    TaskConflictError,
    TaskNotFoundError,
)

log = logging.getLogger("conveyor.api")

#: The message of a 503 for an unreachable Redis: the request's fate is unknown.
UNAVAILABLE = "Redis is unavailable; what this request writes may or may not have been stored"
#: Seconds a client should wait before it tries again after a 503.
RETRY_AFTER = 5
_RETRY = {"Retry-After": str(RETRY_AFTER)}

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
          415: "unsupported_media_type", 422: "invalid_request", 503: "unavailable"}  # fmt: skip


class ApiError(Exception):
    """An error answer: status, stable code, message and optional details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error body every failure answers with."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that map every failure to the error shape."""
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(ConveyorError, _conveyor)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    details = [
        {"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "message": e["msg"]}
        for e in errors
    ]
    fields = ", ".join(d["field"] for d in details)
    return error_response(422, "invalid_request", f"invalid value for {fields}", details)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _CODES.get(exc.status_code, "error")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


async def _conveyor(request: Request, exc: ConveyorError) -> JSONResponse:
    if isinstance(exc, BrokerFullError):
        log.warning("Redis full: %s", exc)
        return _full(exc)
    if isinstance(exc, BrokerUnavailableError):
        # a lost reply leaves the outcome unknown: Redis may have applied the write
        log.warning("Redis unavailable: %s", exc)
        return error_response(503, "redis_unavailable", UNAVAILABLE, headers=_RETRY)
    if isinstance(exc, NotReplicatedError):
        # stored on the master and queued: a retry is safe only under an idempotency key
        log.warning("%s", exc)
        details = {"stored": list(exc.stored), "replicas": exc.replicas, "needed": exc.needed}
        return error_response(503, "not_replicated", str(exc), details, _RETRY)
    if isinstance(exc, TaskNotFoundError):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, TaskConflictError):
        return error_response(409, "conflict", str(exc), {"state": exc.state})
    if isinstance(exc, CorruptRecordError):
        log.error("%s", exc)
        return error_response(500, "corrupt_record", str(exc))
    if isinstance(exc, ConfigurationError | SerializationError):
        return error_response(422, "invalid_request", str(exc))
    return await _unexpected(request, exc)


def _full(exc: BrokerFullError) -> JSONResponse:
    """Redis refused the write for lack of memory, before writing: say what was stored."""
    if exc.stored:
        message = f"Redis is full; {len(exc.stored)} of the tasks were stored (see details)"
    else:
        message = "Redis is full (maxmemory); nothing was stored"
    return error_response(503, "redis_full", message, {"stored": list(exc.stored)}, _RETRY)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "an unexpected error occurred; it was logged")
