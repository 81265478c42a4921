"""Helpers shared by the task routes: reading JSON bodies, body to Message, the allow-list."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Coroutine, Iterable
from typing import Annotated, Any, TypeVar

from fastapi import Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from conveyor.api.config import ApiSettings
from conveyor.api.deps import ApiState
from conveyor.api.errors import ApiError
from conveyor.api.schemas import Enqueued, NewTaskIn
from conveyor.model import TaskState
from conveyor.options import TaskOptions
from conveyor.producer import Message, TaskHandle
from conveyor.traceparent import valid_traceparent

M = TypeVar("M", bound=BaseModel)
#: How the OpenAPI schema describes the `traceparent` header.
TRACEPARENT_DOC = (
    "W3C Trace Context parent of the task's execution span; an invalid value is ignored."
)
#: The request's W3C `traceparent` header, stored with the tasks it enqueues: their
#: execution spans join the caller's trace (an invalid value is ignored, not refused).
TraceParent = Annotated[str | None, Header(alias="traceparent", description=TRACEPARENT_DOC)]
#: The same header in the OpenAPI schema of a route that reads its request itself.
TRACEPARENT_PARAMETER: dict[str, Any] = {
    "name": "traceparent",
    "in": "header",
    "required": False,
    "description": TRACEPARENT_DOC,
    "schema": {"type": "string"},
}
#: Registered names an `unknown_task` answer suggests, at most.
SUGGESTED = 5


class DirectRoute(APIRoute):
    """A route whose endpoint takes the Request and returns the Response itself.

    FastAPI still documents it (the OpenAPI schema comes from the route's arguments) but
    skips solving dependencies per request, which parses cookies and query strings the
    route never reads: `POST /task` served about 40 % more requests per second without it.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


class JsonRoute(APIRoute):
    """A route whose body FastAPI reads, under the content-type rule of `POST /task`
    (`require_json`): FastAPI alone validates a body of another type as bytes and answers
    422 "Input should be a valid dictionary"."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def handle(request: Request) -> Response:
            require_json(request)
            return await handler(request)

        return handle


def require_json(request: Request) -> None:
    """415 unless the body is declared JSON (`application/json` or `+json`), on every route.

    A missing or other type is refused, as FastAPI's strict default does, with the header to
    send (curl -d sends a form): a page on another site can send a body untyped or as
    text/plain without a CORS preflight, and an API without tokens would enqueue it.
    """
    declared = request.headers.get("content-type", "")
    media = declared.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        sent = f"not {media}" if media else "none was sent"
        message = f"the body must be JSON, sent with Content-Type: application/json ({sent})"
        raise ApiError(415, "unsupported_media_type", message)


def parse_body(model: type[M], raw: bytes) -> M:
    """Parse and validate a JSON body in one pass (pydantic's own parser).

    Errors come out as FastAPI's would for a declared body: 400 for bad JSON, 422 naming
    the field.
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors: list[Any] = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI description of a body that a route reads itself with `parse_body`."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def check_allowed(name: str, api: ApiSettings, field: str) -> None:
    """422 if an allow-list is configured and `name` is not on it."""
    if api.allowed_tasks is not None and name not in api.allowed_tasks:
        detail = [{"field": field, "message": "this task name is not accepted by this API"}]
        raise ApiError(422, "task_not_allowed", f"task {name!r} is not accepted", detail)


def check_name(name: str, api: ApiState, field: str) -> None:
    """422 if the allow-list or, when the API was given the app, its registry lacks `name`.

    Without this a misspelled name (`send_email` for `tasks.send_email`, the default name
    being `module.function`) is accepted, and its task dies at the worker as "unknown task".
    """
    check_allowed(name, api.settings, field)
    if api.registry is None or name in api.registry:
        return
    shown = ", ".join(suggestions(name, api.registry)) or "none is registered"
    detail = [{"field": field, "message": f"no task of this name is registered; known: {shown}"}]
    raise ApiError(422, "unknown_task", f"unknown task {name!r}; known tasks: {shown}", detail)


def suggestions(name: str, known: Iterable[str]) -> list[str]:
    """Up to SUGGESTED registered names, likeliest first: those ending in `.name`, then
    the closest spellings, then the rest in order."""
    names = sorted(known)
    ends = [n for n in names if n.endswith(f".{name}")]
    close = difflib.get_close_matches(name, names, n=SUGGESTED, cutoff=0.6)
    ordered = dict.fromkeys([*ends, *close, *names])
    return list(ordered)[:SUGGESTED]


def to_message(
    body: NewTaskIn, api: ApiState, field: str = "name", trace: str | None = None
) -> Message:
    """The Message for a validated body; `payload` becomes the one positional argument;
    `trace` is a `traceparent` header, kept if valid."""
    check_name(body.name, api, field)
    args = (body.payload,) if "payload" in body.model_fields_set else tuple(body.args or ())
    options = TaskOptions(**body.model_dump(include=set(TaskOptions.NAMES)))
    return Message(body.name, args, body.kwargs or {}, options, valid_traceparent(trace))


def enqueued(handle: TaskHandle) -> Enqueued:
    """The answer for one enqueued (or replayed) task, from the state Redis stored."""
    later = handle.enqueued_state in (TaskState.SCHEDULED, TaskState.RETRYING)
    return Enqueued(
        id=handle.id, status="scheduled" if later else "queued", replayed=handle.replayed
    )
