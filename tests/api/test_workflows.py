"""`GET /v1/workflows/{id}`: a workflow's state, result and nodes, run by a real worker."""

from __future__ import annotations

import asyncio

import httpx
import pytest
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


async def test_post_enqueues_a_nested_workflow_that_a_worker_runs(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    @app.task(name="w.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="w.sum")
    def total(values: list[int]) -> int:
        return sum(values)

    body = {
        "workflow": {
            "chain": [
                {
                    "chord": {
                        "group": [
                            {"task": {"name": "w.add", "args": [1, 2]}},
                            {"chain": [{"task": {"name": "w.add", "args": [3, 4]}},
                                       {"task": {"name": "w.add", "args": [10]}}]},
                        ],
                        "callback": {"task": {"name": "w.sum"}},
                    }
                },
                {"task": {"name": "w.add", "kwargs": {"b": 100}}},
            ]
        },
        "on_failure": "continue",
    }  # fmt: skip
    response = await client.post("/v1/workflows", json=body)
    assert response.status_code == 202, response.text
    workflow_id = response.json()["id"]
    assert response.headers["Location"] == f"/v1/workflows/{workflow_id}"
    async with running_worker(app):
        for _ in range(300):
            found = (await client.get(f"/v1/workflows/{workflow_id}")).json()
            if found["state"] != "running":
                break
            await asyncio.sleep(0.05)
    assert (found["state"], found["policy"]) == ("succeeded", "continue")
    assert found["result"] == (1 + 2) + (3 + 4 + 10) + 100
    await app.aclose()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"workflow": {"task": {"name": "x"}}}, "a workflow is a chain, group or chord"),
        ({"workflow": {"chain": []}}, ""),
        ({"workflow": {"group": [{"task": {"name": "x"}, "group": [{"task": {"name": "y"}}]}]}},
         "one of"),
        ({"workflow": {"chain": [{"task": {"name": "bad name"}}]}}, ""),
        ({"workflow": {"chain": [{"task": {"name": "x", "idempotency_key": "k"}}]}},
         "idempotency keys"),
        ({"workflow": {"group": [{"task": {"name": "x"}}]}, "on_failure": "retry"}, ""),
    ],
    ids=["bare task", "empty chain", "two kinds", "bad name", "idempotency key", "policy"],
)  # fmt: skip
async def test_a_bad_workflow_is_a_422_and_stores_nothing(
    client: httpx.AsyncClient,
    r: redis.Redis,
    prefix: str,
    body: dict[str, object],
    message: str,
) -> None:
    response = await client.post("/v1/workflows", json=body)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert list(r.scan_iter(f"{prefix}:*")) == []
