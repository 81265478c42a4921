"""Flow-control options over `/v1/tasks`, validated, and `/v1/queues/{name}/flow`."""

from __future__ import annotations

import httpx
import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from tests.api.helpers import assert_error


async def test_unique_and_concurrency_options_act_on_enqueues_over_http(
    client: httpx.AsyncClient, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    body = {"name": "report", "args": [7], "unique": True, "unique_key": "acct-7"}
    first = await client.post("/v1/tasks", json=body)
    again = await client.post("/v1/tasks", json={**body, "args": [8]})
    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == {**first.json(), "replayed": True}
    keys = GlobalKeys(prefix).queue("default")
    assert r.get(keys.unique("report:acct-7")) == first.json()["id"].encode()

    limited = {"name": "sync", "concurrency": 2, "concurrency_key": "crm", "rate_limit": "5/s"}
    response = await client.post("/v1/tasks/batch", json={"tasks": [limited, limited]})
    assert response.status_code == 202, response.text
    broker = app.sync_broker()
    assert len(broker.run(broker.ops.claim("default", 10, "w1")).tasks) == 2  # report, sync
    flow = await client.get("/v1/queues/default/flow")
    assert flow.status_code == 200
    [bucket] = flow.json()["rates"]
    assert flow.json() == {
        "queue": "default",
        "concurrency": [{"key": "crm", "in_use": 1, "waiting": 0}],
        "rates": [{"key": "sync", "booked_seconds": bucket["booked_seconds"]}],
        "groups": 0,
    }
    assert 0.1 < bucket["booked_seconds"] <= 0.4  # one start taken, one reserved


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("rate_limit", "fast", "rate_limit must look like"),
        ("rate_limit", "0/s", "at least 1 task"),
        ("unique", "sometimes", "unique"),
        ("concurrency", 0, "concurrency"),
        ("unique_key", "x" * 201, "unique_key"),
        ("concurrency_key", "tenant", "concurrency_key is set but concurrency is not"),
    ],
)
async def test_bad_flow_options_are_refused_and_store_nothing(
    option: str, value: object, says: str, client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    response = await client.post("/v1/tasks", json={"name": "job", option: value})
    assert_error(response, 422, "invalid_request")
    assert says in response.text
    assert r.keys(f"{prefix}:*") == []


async def test_throttle_needs_its_window(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tasks", json={"name": "job", "unique": "throttle"})
    assert_error(response, 422, "invalid_request")
    assert "unique_window" in response.text


async def test_the_flow_route_checks_the_queue_name(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/queues/bad:name/flow")
    assert response.status_code == 422
