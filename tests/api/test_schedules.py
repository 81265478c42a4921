"""`/v1/schedules`: list, upsert, get, pause, resume, run and delete; bad bodies are 422
and store nothing; unknown ids are 404; writes need the write scope and are audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.api.config import ApiSettings, parse_tokens
from conveyor.settings import Settings
from tests.api.conftest import ClientFactory
from tests.api.helpers import assert_error, record
from tests.support.keyspace import dump

NIGHTLY = {"task": "report", "cron": "30 2 * * *", "tz": "Europe/Paris", "kwargs": {"a": 1}}


async def test_upsert_read_pause_resume_run_delete(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    assert (await client.get("/v1/schedules")).json() == {"schedules": []}
    created = await client.put("/v1/schedules/nightly", json=NIGHTLY)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["result"] == "created" and body["origin"] == "api"
    assert (body["cron"], body["tz"], body["every"], body["queue"]) == (
        "30 2 * * *", "Europe/Paris", None, "default"
    )  # fmt: skip
    assert body["next_run"].endswith("Z") and body["last_run"] is None and not body["paused"]
    again = await client.put("/v1/schedules/nightly", json=NIGHTLY)
    assert (again.status_code, again.json()["result"]) == (200, "unchanged")
    changed = await client.put("/v1/schedules/nightly", json={**NIGHTLY, "priority": 5})
    assert (changed.status_code, changed.json()["result"]) == (200, "updated")

    listed = (await client.get("/v1/schedules")).json()["schedules"]
    assert [s["id"] for s in listed] == ["nightly"] and listed[0]["priority"] == 5
    assert (await client.get("/v1/schedules/nightly")).json()["kwargs"] == {"a": 1}

    paused = await client.post("/v1/schedules/nightly/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert paused.json()["next_run"] is None
    resumed = await client.post("/v1/schedules/nightly/resume")
    assert resumed.json()["paused"] is False and resumed.json()["next_run"]

    ran = await client.post("/v1/schedules/nightly/run")
    assert ran.status_code == 202 and ran.json()["status"] == "queued"
    task = await record(client, ran.json()["id"])
    assert (task["name"], task["kwargs"], task["priority"]) == ("report", {"a": 1}, 5)

    deleted = await client.delete("/v1/schedules/nightly")
    assert deleted.status_code == 204
    assert (await client.get("/v1/schedules")).json() == {"schedules": []}
    audit = (await client.get("/v1/audit")).json()
    actions = [e["action"] for e in audit["items"]]
    assert actions[:6] == [
        "schedule.remove", "schedule.run", "schedule.resume", "schedule.pause",
        "schedule.upsert", "schedule.upsert",
    ]  # fmt: skip


async def test_every_schedules(client: httpx.AsyncClient) -> None:
    response = await client.put("/v1/schedules/beat", json={"task": "x", "every": 90})
    assert response.status_code == 201
    assert (response.json()["every"], response.json()["cron"]) == (90, None)


async def test_unknown_ids_are_404(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/v1/schedules/nope"),
        ("DELETE", "/v1/schedules/nope"),
        ("POST", "/v1/schedules/nope/pause"),
        ("POST", "/v1/schedules/nope/resume"),
        ("POST", "/v1/schedules/nope/run"),
    ):
        error = assert_error(await client.request(method, path), 404, "not_found")
        assert "no schedule 'nope'" in error["message"]


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        ({"task": "x", "cron": "99 * * * *"}, "invalid_request", "invalid cron expression"),
        (
            {"task": "x", "cron": "0 * * * *", "tz": "Mars/Base"},
            "invalid_request",
            "unknown time zone",
        ),
        ({"task": "x", "cron": "0 * * * *", "every": 60}, "invalid_request", "exactly one"),
        ({"task": "x"}, "invalid_request", "exactly one"),
        ({"task": "x", "every": 0}, "invalid_request", "every"),
        ({"task": "x", "every": -3}, "invalid_request", "every"),
        ({"task": "x", "every": 60, "tz": "UTC"}, "invalid_request", "tz"),
        ({"task": "x", "every": 60, "misfire": "later"}, "invalid_request", "misfire"),
        ({"task": "x", "every": 60, "jitter": -1}, "invalid_request", "jitter"),
        ({"task": "x", "every": 60, "queue": "a:b"}, "invalid_request", "queue"),
        ({"task": "x", "every": 60, "extra": 1}, "invalid_request", "extra"),
        ({"task": "bad name", "every": 60}, "invalid_request", "task"),
    ],
)
async def test_bad_bodies_are_422_and_store_nothing(
    client: httpx.AsyncClient,
    r: redis.Redis,
    prefix: str,
    body: dict[str, Any],
    code: str,
    text: str,
) -> None:
    error = assert_error(await client.put("/v1/schedules/s", json=body), 422, code)
    assert text in str(error), error
    assert dump(r, prefix) == {}


async def test_a_bad_id_is_422(client: httpx.AsyncClient, r: redis.Redis, prefix: str) -> None:
    response = await client.put("/v1/schedules/a%7Bb%7D", json={"task": "x", "every": 60})
    assert_error(response, 422, "invalid_request")
    assert dump(r, prefix) == {}


@pytest.fixture
async def known(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an API given an app that registers `report` (queue "reports")."""
    app = Conveyor(settings=settings)
    app.task(name="report", queue="reports")(lambda: None)
    server = create_app(settings, ApiSettings(), app=app)
    transport = httpx.ASGITransport(app=server)
    async with (
        server.router.lifespan_context(server),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


async def test_an_api_given_the_app_refuses_unknown_tasks(
    known: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    error = assert_error(
        await known.put("/v1/schedules/s", json={"task": "nope", "every": 60}),
        422,
        "invalid_request",
    )
    assert "unknown task 'nope'" in error["message"] and "report" in error["message"]
    assert dump(r, prefix) == {}
    created = await known.put("/v1/schedules/s", json={"task": "report", "every": 60})
    assert created.json()["queue"] == "reports"  # the task's queue applies


async def test_writes_need_the_write_scope(
    make_client: ClientFactory, r: redis.Redis, prefix: str
) -> None:
    read, write = "r" * 20, "w" * 20
    headers = {"Authorization": f"Bearer {read}"}
    async with make_client(ApiSettings(tokens=parse_tokens(f"{read}:read,{write}:write"))) as c:
        for method, path in (
            ("PUT", "/v1/schedules/s"),
            ("DELETE", "/v1/schedules/s"),
            ("POST", "/v1/schedules/s/pause"),
            ("POST", "/v1/schedules/s/resume"),
            ("POST", "/v1/schedules/s/run"),
        ):
            body = {"task": "x", "every": 60} if method == "PUT" else None
            response = await c.request(method, path, json=body, headers=headers)
            assert_error(response, 403, "forbidden")
        assert (await c.get("/v1/schedules", headers=headers)).status_code == 200
        assert dump(r, prefix) == {}
        writer = {"Authorization": f"Bearer {write}"}
        response = await c.put("/v1/schedules/s", json={"task": "x", "every": 60}, headers=writer)
        assert response.status_code == 201
