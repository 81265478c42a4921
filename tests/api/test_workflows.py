"""`GET /v1/workflows/{id}`: a workflow's state, result and nodes, run by a real worker."""

from __future__ import annotations

import httpx
import redis

from conveyor import Conveyor, chord, group
from conveyor.ids import new_ulid
from tests.api.helpers import assert_error
from tests.support.worker import running_worker


async def test_a_workflow_is_read_while_it_runs_and_once_it_ended(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    @app.task(name="w.num")
    def num(n: int) -> int:
        return n

    @app.task(name="w.total")
    def total(values: list[int]) -> int:
        return sum(values)

    handle = await app.enqueue_async(chord([num.message(1), num.message(2)], total.message()))
    response = await client.get(f"/v1/workflows/{handle.id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["state"], body["policy"]) == (handle.id, "running", "stop")
    assert body["created_at"].endswith("Z") and body["finished_at"] is None
    assert [(n["id"], n["kind"], n["state"]) for n in body["nodes"]] == [
        ("0", "chord", "started"),
        ("1", "group", "started"),
        ("2", "task", "started"),
        ("3", "task", "started"),
        ("4", "task", "waiting"),
    ]
    async with running_worker(app):
        assert await handle.result_async(timeout=30) == 3
    body = (await client.get(f"/v1/workflows/{handle.id}")).json()
    assert (body["state"], body["result"], body["error"], body["failures"]) == (
        "succeeded", 3, None, 0,
    )  # fmt: skip
    assert body["finished_at"].endswith("Z")
    nodes = body["nodes"]
    assert [n["result"] for n in nodes] == [3, [1, 2], 1, 2, 3]
    assert nodes[4]["name"] == "w.total" and nodes[4]["task_id"].startswith("default:")
    await app.aclose()


async def test_unknown_and_malformed_workflow_ids(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"/v1/workflows/{new_ulid()}"), 404, "not_found")
    assert_error(await client.get("/v1/workflows/not-a-workflow"), 422, "invalid_request")


async def test_the_workflow_index_newest_first(
    client: httpx.AsyncClient, app: Conveyor, r: redis.Redis
) -> None:
    first = app.enqueue(group([app.message("x")]))
    second = app.enqueue(group([app.message("y")]))
    r.delete(*app.sync_broker().ops.keys.workflow(first.id).all)  # as when it expired
    body = (await client.get("/v1/workflows")).json()
    assert (body["total"], body["offset"], body["limit"]) == (2, 0, 50)
    assert [(w["id"], w["state"]) for w in body["items"]] == [
        (second.id, "running"),
        (first.id, "expired"),
    ]
    assert body["items"][0]["created_at"].endswith("Z")
    page = (await client.get("/v1/workflows", params={"offset": 1, "limit": 1})).json()
    assert [w["id"] for w in page["items"]] == [first.id]
    assert_error(await client.get("/v1/workflows", params={"limit": 0}), 422, "invalid_request")
