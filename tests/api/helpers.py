"""Helpers of the API tests: the error shape, enqueueing through the API, reading the keyspace."""

from __future__ import annotations

from typing import Any

import httpx
import redis

from conveyor.broker.keys import GlobalKeys
from tests.support.worker import wait_until


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check the one error shape, the status and the code; returns the `error` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in response.text
    return error


def fields_named(error: dict[str, Any]) -> list[str]:
    """The fields an error's details name."""
    details = error["details"]
    assert isinstance(details, list) and details, error
    return [d["field"] for d in details]


async def enqueue(client: httpx.AsyncClient, name: str, **fields: Any) -> str:
    """POST /v1/tasks; returns the new task's id."""
    response = await client.post("/v1/tasks", json={"name": name, **fields})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def record(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """GET /v1/tasks/{id}, which must exist."""
    response = await client.get(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_state(
    client: httpx.AsyncClient, task_ids: list[str], state: str, timeout: float = 15.0
) -> None:
    """Poll the API until every task of `task_ids` is in `state`."""

    async def reached() -> bool:
        for task_id in task_ids:
            if (await record(client, task_id))["state"] != state:
                return False
        return True

    await wait_until(reached, timeout, f"{len(task_ids)} tasks to be {state}")


def task_ids(r: redis.Redis, prefix: str) -> set[str]:
    """Ids of every task hash stored under `prefix`."""
    client: Any = r
    keys = client.scan_iter(match=f"{prefix}:*:task:*", count=1000)
    return {k.decode().split(":task:", 1)[1] for k in keys}


def members(r: redis.Redis, prefix: str, queue: str, state: str) -> set[str]:
    """Task ids in the `state` index of `queue` (pending: its ZSET and its ready list)."""
    keys = GlobalKeys(prefix).queue(queue)
    client: Any = r
    found = {m.decode() for m in client.zrange(getattr(keys, state), 0, -1)}
    if state == "pending":
        found |= {f"{queue}:{m.decode()}" for m in client.lrange(keys.ready, 0, -1)}
    return found
