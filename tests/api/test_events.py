"""`GET /v1/events` (server-sent events, resumable) and `GET /v1/tasks/{id}?wait=`."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from conveyor import Conveyor
from conveyor.settings import Settings
from tests.api.test_server import running_api
from tests.broker.seed import claim_one


def messages(body: str) -> list[dict[str, object]]:
    """The events of an event-stream body: each `data:` JSON, with its `id:` checked."""
    found = []
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            event = orjson.loads(lines["data"])
            assert event["id"] == lines["id"]
            found.append(event)
    return found


async def test_a_bounded_stream_sends_the_events_after_the_cursor(
    app: Conveyor, client: httpx.AsyncClient
) -> None:
    handles = [app.enqueue("emails.send"), app.enqueue("report", queue="reports")]
    answer = await client.get("/v1/events", params={"after": "0", "duration": 0.3})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.text.startswith("retry: 1000\n\n")
    events = messages(answer.text)
    assert [(e["event"], e["task_id"]) for e in events] == [("enqueued", h.id) for h in handles]


async def test_last_event_id_resumes_after_it_and_filters_apply(
    app: Conveyor, client: httpx.AsyncClient
) -> None:
    first = app.enqueue("a", queue="one")
    app.enqueue("b", queue="two")
    second = app.enqueue("a", queue="one")
    everything = messages((await client.get("/v1/events?after=0&duration=0.2")).text)
    resumed = await client.get(
        "/v1/events",
        params={"queue": "one", "task": "a", "duration": 0.2},
        headers={"Last-Event-ID": str(everything[0]["id"])},
    )
    assert everything[0]["task_id"] == first.id
    assert [e["task_id"] for e in messages(resumed.text)] == [second.id]


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"after": "soon"}, {}),
        ({}, {"Last-Event-ID": "x-1"}),
        ({"queue": "bad queue"}, {}),
        ({"duration": 0}, {}),
    ],
    ids=["after", "last-event-id", "queue", "duration"],
)
async def test_bad_parameters_are_a_clear_422(
    client: httpx.AsyncClient, params: dict[str, object], headers: dict[str, str]
) -> None:
    answer = await client.get("/v1/events", params=params, headers=headers)  # type: ignore[arg-type]
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"]


def test_a_live_stream_over_http_sends_events_as_they_happen(
    app: Conveyor, settings: Settings, tmp_path: Path
) -> None:
    with (
        running_api(settings, tmp_path) as (_, base),
        httpx.stream("GET", f"{base}/v1/events?queue=default", timeout=30) as stream,
    ):
        assert stream.status_code == 200
        handle = app.enqueue("job")  # after the stream began: `now` is before it
        for line in stream.iter_lines():
            if line.startswith("data: "):
                event = orjson.loads(line.removeprefix("data: "))
                break
    assert (event["event"], event["task_id"]) == ("enqueued", handle.id)


async def test_wait_answers_when_the_task_finishes(
    app: Conveyor, client: httpx.AsyncClient
) -> None:
    broker = app.sync_broker()
    handle = app.enqueue("job")
    task = claim_one(broker)
    threading.Timer(0.3, lambda: broker.execute([broker.ops.ack([(task, b"5")])])).start()
    began = time.monotonic()
    answer = await client.get(f"/v1/tasks/{handle.id}", params={"wait": 10})
    assert answer.status_code == 200
    assert answer.json()["state"] == "succeeded" and answer.json()["result"] == 5
    assert time.monotonic() - began < 8


async def test_wait_answers_with_the_state_at_its_end(
    app: Conveyor, client: httpx.AsyncClient
) -> None:
    handle = app.enqueue("job")
    answer = await client.get(f"/v1/tasks/{handle.id}", params={"wait": 0.2})
    assert answer.status_code == 200 and answer.json()["state"] == "pending"


@pytest.mark.parametrize("wait", ["-1", "61", "soon"])
async def test_a_bad_wait_is_a_422(app: Conveyor, client: httpx.AsyncClient, wait: str) -> None:
    handle = app.enqueue("job")
    answer = await client.get(f"/v1/tasks/{handle.id}", params={"wait": wait})
    assert answer.status_code == 422


async def test_waits_on_an_unknown_task_are_a_404(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/tasks/default:" + "0" * 26, params={"wait": 1})
    assert answer.status_code == 404


async def test_many_waiting_requests_all_answer(app: Conveyor, client: httpx.AsyncClient) -> None:
    broker = app.sync_broker()
    handles = [app.enqueue("job") for _ in range(20)]
    waits = [client.get(f"/v1/tasks/{h.id}", params={"wait": 10}) for h in handles]
    tasks = [claim_one(broker) for _ in handles]
    threading.Timer(
        0.3, lambda: broker.execute([broker.ops.ack([(t, b"1") for t in tasks])])
    ).start()
    answers = await asyncio.gather(*waits)
    assert [a.json()["state"] for a in answers] == ["succeeded"] * 20
