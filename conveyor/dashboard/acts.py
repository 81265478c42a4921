"""The actions the pages take (a write token, sent as JSON), and the session: who is
looking, login and logout.
Every action goes through the Inspector with the operator as its actor: it is audited."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from conveyor.api.errors import ApiError
from conveyor.api.schemas import QueueName, Strict, TaskName
from conveyor.broker.dead_letters import DeadFilter
from conveyor.dashboard.auth import COOKIE, SESSION_SECONDS
from conveyor.dashboard.state import Dash, Operator
from conveyor.dashboard.views import queue_row, task_view
from conveyor.errors import TaskNotFoundError

router = APIRouter(prefix="/api")
#: Most ids one request may name.
MAX_IDS = 1000
_AGE = Field(None, ge=0, le=10 * 365 * 24 * 3600)


class LoginIn(Strict):
    token: str = Field(min_length=1, max_length=1000)


class FilterIn(Strict):
    """Which dead letters (all fields optional; none at all means every one)."""

    task: TaskName | None = None
    text: str | None = Field(None, max_length=200)
    min_age: float | None = _AGE
    max_age: float | None = _AGE
    queue: QueueName | None = None

    def where(self) -> DeadFilter:
        return DeadFilter(self.task, self.text or None, self.min_age, self.max_age)


class SelectionIn(Strict):
    """Dead letters by id, or all that match a filter (exactly one of the two)."""

    ids: list[str] | None = Field(None, min_length=1, max_length=MAX_IDS)
    filter: FilterIn | None = None

    def check(self) -> None:
        if (self.ids is None) == (self.filter is None):
            raise ApiError(422, "invalid_request", "send either `ids` or `filter`")


class PurgeIn(Strict):
    confirm: str
    queue: QueueName | None = None


class PayloadIn(Strict):
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


@router.get("/session")
async def session(dash: Dash, request: Request) -> dict[str, Any]:
    """Who is looking (signed out: `user` null), and whether the page may offer actions."""
    return dash.guard.peek(request).to_json()


@router.post("/login")
async def login(dash: Dash, body: LoginIn, request: Request, response: Response) -> dict[str, Any]:
    """Trade a token for a session cookie (HttpOnly, SameSite=Strict)."""
    grant = dash.guard.login(body.token)
    response.set_cookie(
        COOKIE, body.token, max_age=SESSION_SECONDS, path=_cookie_path(request),
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip
    return {"user": grant.name, "scope": grant.scope}


@router.post("/logout", status_code=204)
async def logout(request: Request, response: Response) -> None:
    """Forget the session cookie."""
    response.delete_cookie(COOKIE, path=_cookie_path(request))


@router.post("/queues/{name}/pause")
async def pause(dash: Dash, name: QueueName, actor: Operator) -> dict[str, Any]:
    """No worker claims from the queue until it is resumed."""
    return queue_row(await dash.inspector.set_paused(name, True, actor=actor))


@router.post("/queues/{name}/resume")
async def resume(dash: Dash, name: QueueName, actor: Operator) -> dict[str, Any]:
    """Workers claim from the queue again."""
    return queue_row(await dash.inspector.set_paused(name, False, actor=actor))


@router.post("/tasks/{task_id}/cancel")
async def cancel(dash: Dash, task_id: str, actor: Operator) -> dict[str, Any]:
    """Cancel a task: at once if not started yet, else its worker stops it (409 once
    finished)."""
    await dash.inspector.cancel(task_id, actor=actor)
    return await _task(dash, task_id)


@router.post("/tasks/{task_id}/retry")
async def retry(dash: Dash, task_id: str, actor: Operator) -> dict[str, Any]:
    """Run a delayed task or a waiting retry now; replay a dead letter (409 otherwise)."""
    if await dash.inspector.dead_letter(task_id) is not None:
        await dash.inspector.replay([task_id], actor=actor)
    else:
        await dash.inspector.run_now(task_id, actor=actor)
    return await _task(dash, task_id)


@router.delete("/tasks/{task_id}")
async def delete(dash: Dash, task_id: str, actor: Operator) -> dict[str, Any]:
    """Delete a task that is not running (409 if active)."""
    await dash.inspector.delete_task(task_id, actor=actor)
    return {"deleted": 1}


@router.post("/dead/retry")
async def retry_dead(dash: Dash, body: SelectionIn, actor: Operator) -> dict[str, Any]:
    """Requeue dead letters: the selected ones, or all that match the filter."""
    body.check()
    if body.ids is not None:
        return {"requeued": len(await dash.inspector.replay(body.ids, actor=actor))}
    assert body.filter is not None
    queues = [body.filter.queue] if body.filter.queue else None
    count = await dash.inspector.replay_all(queues, where=body.filter.where(), actor=actor)
    return {"requeued": count}


@router.post("/dead/delete")
async def delete_dead(dash: Dash, body: SelectionIn, actor: Operator) -> dict[str, Any]:
    """Delete dead letters: the selected ones, or all that match the filter."""
    body.check()
    if body.ids is not None:
        return {"deleted": await dash.inspector.delete_dead(body.ids, actor=actor)}
    assert body.filter is not None
    queues = [body.filter.queue] if body.filter.queue else None
    where = body.filter.where()
    return {"deleted": await dash.inspector.delete_dead_matching(queues, where, actor=actor)}


@router.post("/dead/purge")
async def purge(dash: Dash, body: PurgeIn, actor: Operator) -> dict[str, Any]:
    """Delete every dead letter (of one queue): the body must say `"confirm": "purge"`."""
    if body.confirm != "purge":
        raise ApiError(422, "invalid_request", 'type "purge" to confirm')
    queues = [body.queue] if body.queue else None
    return {"deleted": await dash.inspector.purge_dead(queues, actor=actor)}


@router.post("/dead/{task_id}/replay")
async def replay_edited(
    dash: Dash, task_id: str, body: PayloadIn, actor: Operator
) -> dict[str, Any]:
    """Requeue a dead letter with the payload the operator corrected."""
    if not await dash.inspector.replay_edited(task_id, body.args, body.kwargs, actor=actor):
        raise TaskNotFoundError(f"no dead letter {task_id}")
    return {"requeued": 1, **(await _task(dash, task_id))}


async def _task(dash: Dash, task_id: str) -> dict[str, Any]:
    record = await dash.inspector.task(task_id)
    if record is None:
        raise TaskNotFoundError(f"no task {task_id}")
    return {"task": task_view(record)["task"]}


def _cookie_path(request: Request) -> str:
    """The dashboard's own path, so its cookie never goes to the API beside it."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/") + "/"
