"""The seeds' API, unchanged: `POST /task` and `GET /stats`."""

from __future__ import annotations

import httpx
import orjson
import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from tests.api.helpers import enqueue, members, record, task_ids, wait_for_state
from tests.support.keyspace import depths
from tests.support.worker import running_worker

#: The seeds' curl example, byte for byte: `curl -X POST -H 'Content-Type: application/json'
#: -d '{"type": "email-notification", "payload": "user@example.com"}' localhost:8085/task`
SEED_BODY = b'{"type": "email-notification", "payload": "user@example.com"}'


async def test_the_seed_curl_example_is_queued(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    response = await client.post(
        "/task", content=SEED_BODY, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"status", "task_id"}
    assert body["status"] == "queued"
    task_id = body["task_id"]
    stored = await record(client, task_id)
    assert (stored["name"], stored["queue"], stored["state"]) == (
        "email-notification",
        "default",
        "pending",
    )
    assert (stored["args"], stored["kwargs"]) == (["user@example.com"], {})
    # the keyspace holds exactly this task, pending on the default queue
    key = GlobalKeys(prefix).queue("default").task(task_id)
    assert orjson.loads(r.hget(key, "args") or b"") == ["user@example.com"]
    assert task_ids(r, prefix) == {task_id}
    assert members(r, prefix, "default", "pending") == {task_id}


async def test_any_json_payload_arrives_as_the_one_argument(client: httpx.AsyncClient) -> None:
    payloads: list[object] = [{"user": 42, "tags": ["a", "b"]}, [1, 2], 7, None, True]
    for payload in payloads:
        response = await client.post("/task", json={"type": "notify", "payload": payload})
        assert response.status_code == 202, response.text
        stored = await record(client, response.json()["task_id"])
        assert stored["args"] == [payload]


async def test_stats_sums_every_queue_and_details_each(
    client: httpx.AsyncClient, aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    emails = [await enqueue(client, "send", queue="emails") for _ in range(3)]
    await enqueue(client, "send", queue="emails", delay=60)
    reports = [await enqueue(client, "render", queue="reports") for _ in range(3)]
    doomed = [await enqueue(client, "nobody-handles-this", queue="billing") for _ in range(2)]
    # two reports become active: leased through the broker, as a worker would
    broker = aapp.sync_broker()
    claim = broker.run(broker.ops.claim("reports", 2, "test-claimer"))
    assert [t.id for t in claim.tasks] == reports[:2]
    # the billing tasks die at the hands of a real worker (no handler is registered)
    async with running_worker(aapp, "billing"):
        await wait_for_state(client, doomed, "dead")

    response = await client.get("/stats")
    assert response.status_code == 200
    stats = response.json()
    assert (stats["pending"], stats["processing"], stats["dead_letter"]) == (4, 2, 2)
    assert stats["scheduled"] == 1
    assert sorted(stats["queues"]) == ["billing", "emails", "reports"]
    expected = {
        "emails": {"pending": 3, "active": 0, "scheduled": 1, "dead": 0},
        "reports": {"pending": 1, "active": 2, "scheduled": 0, "dead": 0},
        "billing": {"pending": 0, "active": 0, "scheduled": 0, "dead": 2},
    }
    for queue, counts in expected.items():
        detail = stats["queues"][queue]
        assert detail["name"] == queue and detail["paused"] is False
        assert {s: detail[s] for s in counts} == counts == depths(r, prefix, queue)
    assert stats["queues"]["emails"]["lag_seconds"] > 0
    assert stats["queues"]["billing"]["lag_seconds"] == 0
    assert members(r, prefix, "emails", "pending") == set(emails)


async def test_stats_of_an_empty_deployment(client: httpx.AsyncClient) -> None:
    response = await client.get("/stats")
    assert response.status_code == 200
    assert response.json() == {
        "pending": 0,
        "processing": 0,
        "dead_letter": 0,
        "scheduled": 0,
        "queues": {},
    }
