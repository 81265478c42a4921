"""`/v1/tasks`: enqueue one or a batch, read a task, cancel it; validation and allow-list."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import redis

from conveyor import Conveyor, TaskContext
from conveyor.api.config import ApiSettings
from conveyor.ids import new_ulid
from tests.api.conftest import ClientFactory
from tests.api.helpers import (
    assert_error,
    enqueue,
    fields_named,
    members,
    record,
    task_ids,
    wait_for_state,
)
from tests.support.keyspace import depths, dump
from tests.support.worker import running_worker, wait_until


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_enqueue_with_every_option(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    body = {
        "name": "send-email",
        "args": ["a@b.c", 3],
        "kwargs": {"subject": "hi", "urgent": True},
        "queue": "emails",
        "delay": 30,
        "priority": 7,
        "max_retries": 4,
        "timeout": 12.5,
        "idempotency_key": "order-17",
    }
    response = await client.post("/v1/tasks", json=body)
    assert response.status_code == 202, response.text
    answer = response.json()
    task_id = answer["id"]
    assert answer == {"id": task_id, "status": "scheduled", "replayed": False}
    assert task_id.startswith("emails:")
    assert response.headers["Location"] == f"/v1/tasks/{task_id}"
    assert "Idempotent-Replayed" not in response.headers

    stored = await record(client, response.headers["Location"].rsplit("/", 1)[1])
    expected = {k: v for k, v in body.items() if k != "delay"}
    assert {k: stored[k] for k in expected} == expected
    assert (stored["id"], stored["state"], stored["attempts"]) == (task_id, "scheduled", 0)
    # due 30 s after the script ran; enqueued when its id was made, just before
    waited = _time(stored["due_at"]) - _time(stored["enqueued_at"])
    assert timedelta(seconds=30) <= waited < timedelta(seconds=31)
    assert members(r, prefix, "emails", "scheduled") == {task_id}
    assert depths(r, prefix, "emails") == {"pending": 0, "active": 0, "scheduled": 1, "dead": 0}


async def test_enqueue_with_a_payload_and_an_eta(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    eta = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    body = {"name": "notify", "payload": {"user": 42}, "queue": "alerts", "eta": eta.isoformat()}
    response = await client.post("/v1/tasks", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "scheduled"
    stored = await record(client, response.json()["id"])
    assert (stored["args"], stored["kwargs"]) == ([{"user": 42}], {})
    assert (stored["queue"], stored["state"], stored["priority"]) == ("alerts", "scheduled", 0)
    assert abs(_time(stored["due_at"]) - eta) < timedelta(seconds=1)
    assert members(r, prefix, "alerts", "scheduled") == {stored["id"]}


async def test_enqueue_now_is_pending_on_the_default_queue(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    response = await client.post("/v1/tasks", json={"name": "ping"})
    assert response.status_code == 202
    answer = response.json()
    assert (answer["status"], answer["replayed"]) == ("queued", False)
    stored = await record(client, answer["id"])
    assert (stored["queue"], stored["state"], stored["args"]) == ("default", "pending", [])
    assert members(r, prefix, "default", "pending") == {answer["id"]}


async def test_an_idempotent_replay_answers_the_first_id_and_stores_nothing(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    body = {"name": "charge", "payload": 10, "queue": "billing", "idempotency_key": "charge-1"}
    first = await client.post("/v1/tasks", json=body)
    assert first.status_code == 202
    before = dump(r, prefix)
    again = await client.post("/v1/tasks", json={**body, "payload": 99})
    assert again.status_code == 202
    assert again.json() == {"id": first.json()["id"], "status": "queued", "replayed": True}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert dump(r, prefix) == before  # not one key written or changed
    assert task_ids(r, prefix) == {first.json()["id"]}
    assert (await record(client, first.json()["id"]))["args"] == [10]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"payload": 1, "args": [1]}, "payload or args"),
        ({"payload": None, "args": [1]}, "payload or args"),
        ({"delay": 5, "eta": "2030-01-01T00:00:00Z"}, "delay or eta"),
        ({"eta": "2030-01-01T00:00:00"}, "time zone"),
    ],
    ids=["payload-and-args", "null-payload-and-args", "delay-and-eta", "naive-eta"],
)
async def test_contradictory_or_naive_options_are_refused(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str, body: dict[str, Any], problem: str
) -> None:
    response = await client.post("/v1/tasks", json={"name": "x", **body})
    error = assert_error(response, 422, "invalid_request")
    assert any(problem in d["message"] for d in error["details"]), error
    assert dump(r, prefix) == {}


async def test_an_eta_no_record_can_hold_is_refused(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    # 9999-12-31T23:59:59-23:59 is in the year 10000 in UTC: a datetime cannot hold it
    response = await client.post(
        "/v1/tasks", json={"name": "x", "eta": "9999-12-31T23:59:59-23:59"}
    )
    error = assert_error(response, 422, "invalid_request")
    assert "eta" in fields_named(error)
    assert dump(r, prefix) == {}


async def test_an_unknown_field_is_named(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    response = await client.post("/v1/tasks", json={"name": "x", "colour": "red"})
    error = assert_error(response, 422, "invalid_request")
    assert fields_named(error) == ["colour"]
    assert "colour" in error["message"]
    assert dump(r, prefix) == {}


BAD_NAMES = ["a{b", "a}b", "a:b", "ok\n", "", "a b", "../x", "é", "x" * 200]


@pytest.mark.parametrize("field", ["name", "queue"])
@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
async def test_bad_task_and_queue_names_are_named(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str, field: str, bad: str
) -> None:
    body = {"name": "fine", "queue": "fine", field: bad}
    error = assert_error(await client.post("/v1/tasks", json=body), 422, "invalid_request")
    assert fields_named(error) == [field]
    batch = await client.post("/v1/tasks/batch", json={"tasks": [{"name": "ok"}, body]})
    assert fields_named(assert_error(batch, 422, "invalid_request")) == [f"tasks.1.{field}"]
    if field == "name":
        seed = await client.post("/task", json={"type": bad, "payload": 1})
        assert fields_named(assert_error(seed, 422, "invalid_request")) == ["type"]
    assert dump(r, prefix) == {}


async def test_a_batch_of_mixed_queues_answers_in_order(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    tasks = [
        {"name": "a", "queue": "q1", "payload": 1},
        {"name": "b", "queue": "q2", "args": [2, 3]},
        {"name": "c", "queue": "q1", "delay": 60},
        {"name": "d", "kwargs": {"k": "v"}, "priority": 5},
    ]
    response = await client.post("/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 202, response.text
    answers = response.json()["tasks"]
    assert [a["status"] for a in answers] == ["queued", "queued", "scheduled", "queued"]
    assert not any(a["replayed"] for a in answers)
    ids = [a["id"] for a in answers]
    assert [i.split(":")[0] for i in ids] == ["q1", "q2", "q1", "default"]
    stored = [await record(client, i) for i in ids]
    assert [s["name"] for s in stored] == ["a", "b", "c", "d"]
    assert [s["args"] for s in stored] == [[1], [2, 3], [], []]
    assert stored[3]["kwargs"] == {"k": "v"} and stored[3]["priority"] == 5
    assert task_ids(r, prefix) == set(ids)
    assert depths(r, prefix, "q1") == {"pending": 1, "active": 0, "scheduled": 1, "dead": 0}
    assert members(r, prefix, "q2", "pending") == {ids[1]}


async def test_a_batch_over_the_limit_stores_nothing(
    make_client: ClientFactory, r: redis.Redis, prefix: str
) -> None:
    async with make_client(ApiSettings(max_batch=3)) as client:
        three = await client.post("/v1/tasks/batch", json={"tasks": [{"name": "t"}] * 3})
        assert three.status_code == 202
        stored = task_ids(r, prefix)
        assert len(stored) == 3
        four = await client.post("/v1/tasks/batch", json={"tasks": [{"name": "t"}] * 4})
        error = assert_error(four, 422, "batch_too_large")
        assert fields_named(error) == ["tasks"]
        assert task_ids(r, prefix) == stored


async def test_an_empty_batch_is_refused(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    error = assert_error(
        await client.post("/v1/tasks/batch", json={"tasks": []}), 422, "invalid_request"
    )
    assert fields_named(error) == ["tasks"]
    assert dump(r, prefix) == {}


@pytest.mark.parametrize(
    "task_id",
    [f"default:{new_ulid()}", "nope", "default:not-a-ulid", f"a{{b}}:{new_ulid()}", "default:"],
    ids=["unknown", "no-queue", "bad-ulid", "bad-queue", "empty-ulid"],
)
async def test_reading_or_cancelling_an_unknown_task_is_404(
    client: httpx.AsyncClient, task_id: str
) -> None:
    assert_error(await client.get(f"/v1/tasks/{task_id}"), 404, "not_found")
    assert_error(await client.delete(f"/v1/tasks/{task_id}"), 404, "not_found")


async def test_cancel_a_pending_and_a_scheduled_task(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    pending = await enqueue(client, "x")
    scheduled = await enqueue(client, "x", delay=60)
    for task_id in (pending, scheduled):
        response = await client.delete(f"/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        assert response.json() == {"id": task_id, "state": "cancelled"}
        assert (await record(client, task_id))["state"] == "cancelled"
    assert depths(r, prefix, "default") == {"pending": 0, "active": 0, "scheduled": 0, "dead": 0}
    # cancelling twice: it is finished now
    again = assert_error(await client.delete(f"/v1/tasks/{pending}"), 409, "conflict")
    assert again["details"] == {"state": "cancelled"}


async def test_cancel_a_running_task_answers_cancelling_then_it_is_cancelled(
    client: httpx.AsyncClient, aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    @aapp.task(name="slow")
    async def slow(ctx: TaskContext) -> None:
        await ctx.checkpoint_async({"page": 5})
        await ctx.progress_async(0.5, "half way")
        await asyncio.sleep(60)

    task_id = await enqueue(client, "slow")
    async with running_worker(aapp):

        async def reported() -> bool:
            return (await record(client, task_id))["progress"] is not None

        await wait_until(reported, 10, "the handler's progress")
        stored = await record(client, task_id)
        assert stored["state"] == "active" and stored["checkpoint"] == {"page": 5}
        assert {k: stored["progress"][k] for k in ("fraction", "message")} == {
            "fraction": 0.5, "message": "half way"
        }  # fmt: skip
        response = await client.delete(f"/v1/tasks/{task_id}")
        assert response.status_code == 202, response.text
        assert response.json() == {"id": task_id, "state": "cancelling"}
        await wait_for_state(client, [task_id], "cancelled", timeout=5)
    stored = await record(client, task_id)
    assert [a["outcome"] for a in stored["history"]] == ["cancelled"]
    assert members(r, prefix, "default", "active") == set()
    error = assert_error(await client.delete(f"/v1/tasks/{task_id}"), 409, "conflict")
    assert error["details"] == {"state": "cancelled"}


async def test_cancel_a_claimed_task_with_no_worker_listening_answers_cancelling(
    client: httpx.AsyncClient, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    """The API only asks: the task stays cancelling (and leased) until a worker or the
    recovery of its lease ends it."""
    task_id = await enqueue(client, "x")
    broker = app.sync_broker()
    [claimed] = broker.run(broker.ops.claim("default", 1, "test-claimer")).tasks
    assert claimed.id == task_id
    response = await client.delete(f"/v1/tasks/{task_id}")
    assert response.status_code == 202, response.text
    assert response.json() == {"id": task_id, "state": "cancelling"}
    assert (await record(client, task_id))["state"] == "cancelling"
    assert members(r, prefix, "default", "active") == {task_id}


async def test_cancel_a_succeeded_task_is_a_conflict(
    client: httpx.AsyncClient, aapp: Conveyor
) -> None:
    @aapp.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    task_id = await enqueue(client, "double", payload=21)
    async with running_worker(aapp):
        await wait_for_state(client, [task_id], "succeeded")
    error = assert_error(await client.delete(f"/v1/tasks/{task_id}"), 409, "conflict")
    assert error["details"] == {"state": "succeeded"}
    stored = await record(client, task_id)
    assert (stored["state"], stored["result"], stored["attempts"]) == ("succeeded", 42, 1)


async def test_the_allow_list_refuses_other_names_everywhere(
    make_client: ClientFactory, r: redis.Redis, prefix: str
) -> None:
    async with make_client(ApiSettings(allowed_tasks=frozenset({"ok"}))) as client:
        seed = await client.post("/task", json={"type": "other", "payload": 1})
        assert fields_named(assert_error(seed, 422, "task_not_allowed")) == ["type"]
        one = await client.post("/v1/tasks", json={"name": "other"})
        assert fields_named(assert_error(one, 422, "task_not_allowed")) == ["name"]
        tasks = [{"name": "ok"}, {"name": "other"}]
        batch = await client.post("/v1/tasks/batch", json={"tasks": tasks})
        assert fields_named(assert_error(batch, 422, "task_not_allowed")) == ["tasks.1.name"]
        assert dump(r, prefix) == {}
        # the allowed name goes through every door
        assert (await client.post("/task", json={"type": "ok"})).status_code == 202
        assert (await client.post("/v1/tasks", json={"name": "ok"})).status_code == 202
        both = await client.post("/v1/tasks/batch", json={"tasks": [{"name": "ok"}] * 2})
        assert both.status_code == 202
    assert len(task_ids(r, prefix)) == 4


async def test_times_are_iso_utc_to_the_millisecond_with_z(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    """One time format everywhere: the CLI, the dashboard and the API print the same."""
    task_id = app.enqueue("job", delay=60).id
    record = (await client.get(f"/v1/tasks/{task_id}")).json()
    for name in ("enqueued_at", "due_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record[name]), record[name]
    described = {"id": "w-1", "started_at": 1_700_000_000.5, "heartbeat_at": 1_700_000_001}
    app.sync_broker().run(app.sync_broker().ops.register_worker("w-1", orjson.dumps(described), 1))
    [worker] = (await client.get("/v1/workers")).json()["workers"]
    assert (worker["started_at"], worker["heartbeat_at"]) == (
        "2023-11-14T22:13:20.500Z", "2023-11-14T22:13:21.000Z"
    )  # fmt: skip
