"""The JSON the dashboard's page reads and the actions it takes: the real app, inside its
lifespan, on a real Redis, reached through httpx."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import orjson
import pytest
import redis

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.api.config import ApiSettings, parse_tokens
from conveyor.broker.keys import GlobalKeys
from conveyor.broker.ops import encode_error
from conveyor.broker.sync_broker import SyncBroker
from conveyor.dashboard.app import SECURITY_HEADERS, create_dashboard
from conveyor.schedule import Schedule
from conveyor.settings import Settings
from tests.broker.seed import claim_one
from tests.support.worker import wait_until

READER = "r" * 20
WRITER = "w" * 20
TOKENS = parse_tokens(f"rita:{READER}:read,walt:{WRITER}:write")
JSON = {"content-type": "application/json"}
#: Makes a client on a dashboard: `async with dashboard(api=..., read_only=...) as client`.
DashboardFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def dashboard(settings: Settings) -> DashboardFactory:
    @contextlib.asynccontextmanager
    async def make(
        api: ApiSettings | None = None, *, read_only: bool = False, token: str | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_dashboard(settings, api or ApiSettings(), read_only=read_only)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as c,
        ):
            yield c

    return make


@pytest.fixture
async def client(dashboard: DashboardFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with dashboard() as made:
        yield made


def post(client: httpx.AsyncClient, path: str, body: Any = None) -> Any:
    return client.post(path, content=orjson.dumps(body if body is not None else {}), headers=JSON)


def failed_for_good(app: Conveyor, broker: SyncBroker, name: str, *args: Any) -> str:
    """A task of `name` that failed its only attempt and is a dead letter now."""
    task_id = app.enqueue(name, *args, max_retries=0).id
    task = claim_one(broker)
    assert task.id == task_id
    error = encode_error(ValueError(f"{name} broke"), "Traceback: the line that broke\n")
    assert broker.execute([broker.ops.dead_letter(task, "error", error)]) == [1]
    return task_id


def retried(app: Conveyor, broker: SyncBroker) -> str:
    """A task whose first attempt failed and that waits a minute for its retry."""
    task_id = app.enqueue("flaky").id
    task = claim_one(broker)
    error = encode_error(TimeoutError("slow upstream"), "Traceback: ...\n")
    assert broker.execute([broker.ops.retry(task, 60, error)]) == [1]
    return task_id


# -- reads -------------------------------------------------------------------------------


async def test_the_overview_counts_every_state_and_the_seed_stats_match(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    broker = app.sync_broker()
    app.enqueue("job", delay=60)
    retried(app, broker)
    failed_for_good(app, broker, "bad")
    app.enqueue("job")
    claim_one(broker)  # active
    app.enqueue("job", queue="emails")
    overview = (await client.get("/api/overview")).json()
    rows = {row["name"]: row for row in overview["queues"]}
    assert {k: v for k, v in rows["default"].items() if k != "lag_seconds"} == {
        "name": "default", "pending": 0, "active": 1, "scheduled": 1, "retrying": 1,
        "dead": 1, "paused": False,
    }  # fmt: skip
    assert rows["emails"]["pending"] == 1 and rows["emails"]["lag_seconds"] >= 0
    assert overview["workers"] == {"alive": 0, "lost": 0}
    stats = (await client.get("/stats")).json()
    assert (stats["pending"], stats["processing"], stats["dead_letter"]) == (1, 1, 1)


async def test_a_queue_lists_its_tasks_by_state_and_order_a_page_at_a_time(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    ids = [h.id for h in app.enqueue_many([app.message("job", i) for i in range(5)])]
    page = (await client.get("/api/queues/default?state=pending&limit=2")).json()
    assert page["total"] == 5 and [t["id"] for t in page["items"]] == ids[:2]
    newest = (await client.get("/api/queues/default?order=newest&offset=1&limit=2")).json()
    assert [t["id"] for t in newest["items"]] == [ids[3], ids[2]]
    assert newest["queue"]["pending"] == 5 and newest["items"][0]["state"] == "pending"
    empty = (await client.get("/api/queues/default?state=dead")).json()
    assert (empty["total"], empty["items"]) == (0, [])
    assert (await client.get("/api/queues/nothing-here")).status_code == 404
    assert (await client.get("/api/queues/default?state=succeeded")).status_code == 422
    assert page["flow"] == {"queue": "default", "concurrency": [], "rates": [], "groups": 0}


async def test_a_queue_page_carries_its_flow_control(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    app.enqueue_many(
        [app.message("job", i, concurrency=1, concurrency_key="crm") for i in range(3)]
    )
    broker = app.sync_broker()
    broker.run(broker.ops.claim("default", 10, "w1"))
    page = (await client.get("/api/queues/default?state=active")).json()
    assert page["flow"]["concurrency"] == [{"key": "crm", "in_use": 1, "waiting": 2}]


async def test_a_task_page_has_its_timeline_and_the_actions_its_state_allows(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    broker = app.sync_broker()
    task_id = retried(app, broker)
    view = (await client.get(f"/api/tasks/{task_id}")).json()
    assert view["task"]["state"] == "retrying" and "token" not in view["task"]
    assert view["actions"] == ["cancel", "retry", "delete"]
    kinds = [(e["kind"], e["attempt"]) for e in view["timeline"]]
    assert kinds == [("enqueued", None), ("started", 1), ("failed", 1), ("retry_due", None)]
    failed = view["timeline"][2]
    assert failed["worker"] == "w1" and failed["error"]["type"] == "TimeoutError"
    assert failed["error"]["message"] == "slow upstream"
    dead = failed_for_good(app, broker, "bad")
    ended = (await client.get(f"/api/tasks/{dead}")).json()["timeline"]
    assert [(e["kind"], e["attempt"]) for e in ended[1:]] == [
        ("started", 1), ("failed", 1), ("dead", 1)
    ]  # fmt: skip
    # the error shows once, on the attempt that raised it, not again on the end
    assert ended[2]["error"]["message"] == "bad broke" and ended[3]["error"] is None
    assert (await client.get("/api/tasks/default:01J0000000000000000000000X")).status_code == 404
    assert (await client.get("/api/tasks/not-an-id")).status_code == 404


async def test_dead_letters_filter_by_name_error_text_and_age(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    broker = app.sync_broker()
    bad = failed_for_good(app, broker, "bad")
    worse = failed_for_good(app, broker, "worse")
    everything = (await client.get("/api/dead")).json()
    # newest first, even when both died in the same millisecond (the later id first)
    assert everything["total"] == 2 and [d["id"] for d in everything["items"]] == [worse, bad]
    by_name = (await client.get("/api/dead?task=bad")).json()
    assert [d["id"] for d in by_name["items"]] == [bad]
    assert by_name["items"][0]["error"] == "ValueError: bad broke"
    by_text = (await client.get("/api/dead?text=WORSE%20BROKE")).json()
    assert [d["id"] for d in by_text["items"]] == [worse]
    in_traceback = (await client.get("/api/dead?text=the%20line%20that")).json()
    assert in_traceback["total"] == 0  # the type and message, not the traceback
    assert (await client.get("/api/dead?min_age=3600")).json()["total"] == 0
    assert (await client.get("/api/dead?max_age=3600")).json()["total"] == 2


async def test_workers_show_what_they_do_and_a_silent_one_is_lost(
    client: httpx.AsyncClient, app: Conveyor, settings: Settings
) -> None:
    broker = app.sync_broker()
    fresh = {"id": "w-fresh", "host": "h", "pid": 1, "queues": ["default"], "concurrency": 4,
             "in_flight": 2, "processed": 10, "started_at": time.time() - 60,
             "heartbeat_at": time.time(), "metrics_port": 2113}  # fmt: skip
    silent = {**fresh, "id": "w-silent", "heartbeat_at": time.time() - 60}
    for info in (fresh, silent):
        registered = broker.ops.register_worker(
            str(info["id"]), orjson.dumps(info), int(time.time() * 1000)
        )
        assert broker.run(registered)
    rows = {w["id"]: w for w in (await client.get("/api/workers")).json()["workers"]}
    assert rows["w-fresh"]["lost"] is False and rows["w-silent"]["lost"] is True
    assert (rows["w-fresh"]["in_flight"], rows["w-fresh"]["processed"]) == (2, 10)
    assert rows["w-fresh"]["metrics_port"] == 2113  # where to scrape it
    assert rows["w-fresh"]["queues"] == ["default"] and rows["w-fresh"]["heartbeat_at"]
    assert (await client.get("/api/overview")).json()["workers"] == {"alive": 1, "lost": 1}


# -- actions -----------------------------------------------------------------------------


async def test_pause_resume_cancel_run_now_and_delete_are_done_and_audited(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    broker = app.sync_broker()
    assert (await post(client, "/api/queues/default/pause")).json()["paused"] is True
    assert (await post(client, "/api/queues/default/resume")).json()["paused"] is False
    later = app.enqueue("job", delay=600).id
    cancelled = (await post(client, f"/api/tasks/{later}/cancel")).json()
    assert cancelled["task"]["state"] == "cancelled"
    conflict = await post(client, f"/api/tasks/{later}/cancel")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    waiting = retried(app, broker)
    assert (await post(client, f"/api/tasks/{waiting}/retry")).json()["task"]["state"] == "pending"
    assert app.inspector.queue_stats(["default"])[0].retrying == 0
    assert (await client.delete(f"/api/tasks/{waiting}", headers=JSON)).json() == {"deleted": 1}
    assert app.inspector.task(waiting) is None
    running = app.enqueue("job").id
    claim_one(broker)
    refused = await client.delete(f"/api/tasks/{running}", headers=JSON)
    assert refused.status_code == 409 and app.inspector.task(running) is not None
    log = (await client.get("/api/audit")).json()
    actions = [(e["action"], e["target"]) for e in reversed(log["items"])]
    assert actions == [
        ("pause", "default"), ("resume", "default"), ("cancel", later),
        ("retry", waiting), ("delete", waiting),
    ]  # fmt: skip
    assert {(e["actor"], e["via"], e["address"]) for e in log["items"]} == {
        ("anonymous", "dashboard", "127.0.0.1")
    }


async def test_a_running_task_may_be_cancelled_and_its_page_says_its_worker_stops_it(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    broker = app.sync_broker()
    running = app.enqueue("job").id
    task = claim_one(broker)
    assert (await client.get(f"/api/tasks/{running}")).json()["actions"] == ["cancel"]
    answer = (await post(client, f"/api/tasks/{running}/cancel")).json()
    assert answer["task"]["state"] == "cancelling"
    page = (await client.get(f"/api/tasks/{running}")).json()
    assert page["actions"] == [] and page["timeline"][-1]["kind"] == "cancelling"
    assert broker.execute([broker.ops.end_cancel(task)]) == [1]  # what its worker does
    ended = (await client.get(f"/api/tasks/{running}")).json()
    kinds = [(e["kind"], e["attempt"]) for e in ended["timeline"]]
    assert kinds == [("enqueued", None), ("started", 1), ("cancelled", 1), ("cancelled", None)]
    assert ended["timeline"][2]["text"] == "stopped: cancelled while running"
    assert ended["actions"] == ["delete"]


async def test_dead_letters_are_retried_and_deleted_by_selection_or_filter(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    broker = app.sync_broker()
    ones = [failed_for_good(app, broker, "bad") for _ in range(3)]
    others = [failed_for_good(app, broker, "worse") for _ in range(2)]
    chosen = await post(client, "/api/dead/retry", {"ids": ones[:1]})
    assert chosen.json() == {"requeued": 1}
    matching = await post(client, "/api/dead/retry", {"filter": {"task": "bad"}})
    assert matching.json() == {"requeued": 2}
    assert app.inspector.queue_stats(["default"])[0].pending == 3
    by_filter = await post(client, "/api/dead/delete", {"filter": {"text": "worse broke"}})
    assert by_filter.json() == {"deleted": 2}
    assert all(app.inspector.task(i) is None for i in others)
    both = await post(client, "/api/dead/retry", {"ids": ones, "filter": {}})
    assert both.status_code == 422
    audit = (await client.get("/api/audit")).json()["items"]
    assert [(e["action"], e["count"]) for e in audit] == [
        ("dead.delete", 2),
        ("dead.retry", 2),
        ("dead.retry", 1),
    ]
    assert audit[0]["target"] == "all queues text=worse broke"


async def test_purge_asks_for_its_confirmation(client: httpx.AsyncClient, app: Conveyor) -> None:
    broker = app.sync_broker()
    failed_for_good(app, broker, "bad")
    unconfirmed = await post(client, "/api/dead/purge", {"confirm": "yes"})
    assert unconfirmed.status_code == 422 and app.inspector.queue_stats()[0].dead == 1
    assert (await post(client, "/api/dead/purge", {"confirm": "purge"})).json() == {"deleted": 1}
    assert app.inspector.queue_stats()[0].dead == 0


async def test_a_dead_letter_is_replayed_with_its_corrected_payload(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    broker = app.sync_broker()
    task_id = failed_for_good(app, broker, "bad", "wrong@address")
    replayed = await post(client, f"/api/dead/{task_id}/replay", {"args": ["right@address"]})
    assert replayed.json()["requeued"] == 1
    record = app.inspector.task(task_id)
    assert record is not None
    assert (record.state, record.args, record.kwargs) == ("pending", ["right@address"], {})
    again = await post(client, f"/api/dead/{task_id}/replay", {"args": []})
    assert again.status_code == 404  # not a dead letter any more: nothing is written
    bad_shape = await post(client, f"/api/dead/{task_id}/replay", {"args": {"a": 1}})
    assert bad_shape.status_code == 422
    assert app.inspector.task(task_id).args == ["right@address"]  # type: ignore[union-attr]


# -- who may do what ---------------------------------------------------------------------


async def test_tokens_read_tokens_and_cookies(
    dashboard: DashboardFactory, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    api = ApiSettings(tokens=TOKENS)
    async with dashboard(api) as anonymous:
        assert (await anonymous.get("/api/overview")).status_code == 401
        assert (await anonymous.get("/stats")).status_code == 401
        page = await anonymous.get("/queues/default")  # the shell shows the login form
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        wrong = await post(anonymous, "/api/login", {"token": "x" * 20})
        assert wrong.status_code == 401
        login = await post(anonymous, "/api/login", {"token": WRITER})
        assert login.json() == {"user": "walt", "scope": "write"}
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        session = (await anonymous.get("/api/session")).json()
        assert session == {"auth": True, "user": "walt", "scope": "write", "can_act": True}
        assert (await post(anonymous, "/api/queues/default/pause")).status_code == 200
        await post(anonymous, "/api/logout")
        signed_out = (await anonymous.get("/api/session")).json()
        assert signed_out == {"auth": True, "user": None, "scope": None, "can_act": False}
        assert (await anonymous.get("/api/overview")).status_code == 401
    async with dashboard(api, token=READER) as reader:
        session = (await reader.get("/api/session")).json()
        assert session == {"auth": True, "user": "rita", "scope": "read", "can_act": False}
        assert (await reader.get("/api/overview")).status_code == 200
        refused = await post(reader, "/api/queues/default/resume")
        assert refused.status_code == 403
    [entry] = app.inspector.audit_log()[1]
    assert (entry.actor, entry.action) == ("walt", "pause")
    assert r.exists(GlobalKeys(prefix).queue("default").paused)


async def test_read_only_mode_refuses_every_action(dashboard: DashboardFactory) -> None:
    async with dashboard(ApiSettings(tokens=TOKENS), read_only=True, token=WRITER) as client:
        assert (await client.get("/api/session")).json()["can_act"] is False
        refused = await post(client, "/api/queues/default/pause")
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]


async def test_actions_must_be_json(client: httpx.AsyncClient) -> None:
    form = await client.post("/api/queues/default/pause", data={"x": "1"})
    assert form.status_code == 415


async def test_the_shell_carries_its_base_and_every_answer_its_security_headers(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/", "/workers", "/queues/emails", "/tasks/x", "/dead", "/audit", "/login"):
        page = await client.get(path)
        assert page.status_code == 200 and '<base href="/">' in page.text, path
    for path in ("/", "/api/overview", "/static/app.js"):
        answer = await client.get(path)
        assert answer.status_code == 200, path
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value


async def test_mounted_in_the_api_on_the_same_tokens(settings: Settings) -> None:
    app = create_app(settings, ApiSettings(tokens=TOKENS), dashboard=True)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        page = await client.get("/dashboard/")
        assert page.status_code == 200 and '<base href="/dashboard/">' in page.text
        assert (await client.get("/dashboard/api/overview")).status_code == 401
        login = await post(client, "/dashboard/api/login", {"token": READER})
        assert "Path=/dashboard/" in login.headers["set-cookie"]
        assert (await client.get("/dashboard/api/overview")).status_code == 200
        # the API itself still wants its bearer token: the cookie is the dashboard's
        assert (await client.get("/v1/queues")).status_code == 401


async def test_schedules_are_listed_with_their_next_and_last_run(
    client: httpx.AsyncClient, app: Conveyor
) -> None:
    assert (await client.get("/api/schedules")).json()["schedules"] == []
    store = app.inspector.schedules
    store.upsert(Schedule.build("nightly", "report", cron="30 2 * * *", tz="Europe/Paris"))
    store.upsert(Schedule.build("beat", "ping", every=60))
    store.set_paused("beat", True)
    body = (await client.get("/api/schedules")).json()
    assert body["now"] > 0
    rows = {s["id"]: s for s in body["schedules"]}
    assert list(rows) == ["beat", "nightly"]
    assert rows["beat"]["paused"] is True and rows["beat"]["next_run"] is None
    assert rows["nightly"]["tz"] == "Europe/Paris" and rows["nightly"]["next_run"].endswith("Z")
    assert (await client.get("/schedules")).status_code == 200  # the page's own path


async def test_a_task_s_changes_stream_to_its_page_until_it_ends(
    client: httpx.AsyncClient, app: Conveyor, r: redis.Redis
) -> None:
    app.enqueue("job", "another")
    task = app.enqueue("job", "this one")
    streaming = asyncio.create_task(client.get(f"/api/tasks/{task.id}/events"))

    async def reading() -> bool:  # the stream took its cursor and waits for events
        return any(c.get("cmd") == "xread" and "b" in c.get("flags", "") for c in r.client_list())

    await wait_until(reading, 10, "the stream's blocking read")
    broker = app.sync_broker()
    claimed = broker.run(broker.ops.claim("default", 10, "w1")).tasks
    broker.execute([broker.ops.ack([(t, b'"done"') for t in claimed])])
    answer = await asyncio.wait_for(streaming, 10)  # it ends with the task
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    changes = [orjson.loads(line.removeprefix("data: ")) for line in answer.text.splitlines()
               if line.startswith("data: ")]  # fmt: skip
    assert [(c["event"], c["task_id"]) for c in changes] == [
        ("started", task.id), ("succeeded", task.id),
    ]  # fmt: skip
    assert answer.text.count("event: change") == 2
    missing = await client.get("/api/tasks/not-a-task/events")
    assert missing.status_code == 404
