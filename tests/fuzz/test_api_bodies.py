"""Random bodies for the producing endpoints (issue 4, "Bad input, tried").

Near-valid bodies with wrong types, arbitrary JSON, unicode (lone surrogates included),
huge strings, deep nesting, and raw bytes that may not be JSON at all are POSTed to
/task, /v1/tasks, /v1/tasks/batch and /v1/dead/retry. Every answer is the documented
success or a 4xx of the one error shape, never a 5xx. A 4xx changes nothing in Redis; a
success stored exactly what it announced.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import hypothesis
import orjson
import pytest
import redis
from hypothesis import HealthCheck, event, example, given, note
from hypothesis import strategies as st

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.api.config import ApiSettings
from conveyor.api.schemas import NewTaskIn, ReplayIn, SeedTask
from conveyor.broker.keys import GlobalKeys
from conveyor.ids import id_millis, queue_of
from conveyor.settings import Settings
from tests.fuzz.bodies import (
    BATCHES,
    CONTENT_TYPES,
    DEFAULT_QUEUE,
    NOT_JSON,
    RAW,
    REPLAYS,
    Body,
    as_json,
    bodies,
    new_tasks,
    seed_tasks,
)
from tests.support.keyspace import entry

# -- the API and the keyspace ------------------------------------------------------------


class Api:
    """The real app inside its lifespan, driven from sync tests: one event loop
    (asyncio.Runner) for a whole test, so the app and its Redis clients are made once."""

    def __init__(self, settings: Settings) -> None:
        self.runner = asyncio.Runner()
        self.stack = contextlib.AsyncExitStack()
        app = create_app(settings, ApiSettings())
        # a 500 comes back as an answer, not as the app's exception re-raised in the test
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

        async def enter() -> httpx.AsyncClient:
            await self.stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(transport=transport, base_url="http://test")
            return await self.stack.enter_async_context(client)

        self.client = self.runner.run(enter())

    def post(self, path: str, body: Body) -> httpx.Response:
        """POST `body` as is."""
        headers = {} if body.content_type is None else {"Content-Type": body.content_type}
        return self.runner.run(self.client.post(path, content=body.content, headers=headers))

    def close(self) -> None:
        """Leave the lifespan (closing the Redis clients), then the loop."""
        self.runner.run(self.stack.aclose())
        self.runner.close()


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """The API on this test's keyspace, for every example of the test."""
    made = Api(settings)
    try:
        yield made
    finally:
        made.close()


#: How to measure each Redis type, so a snapshot shows any write.
SIZE = {"hash": "HLEN", "zset": "ZCARD", "set": "SCARD", "list": "LLEN", "string": "STRLEN"}


def keyspace(r: redis.Redis, prefix: str) -> dict[str, tuple[str, int]]:
    """Every key under `prefix` with its type and size, except claim-request keys: they
    expire on their own after one lease (a worker's retry dedupe), whatever the API does."""
    client: Any = r
    keys = sorted(
        k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=1000) if b":claim:" not in k
    )
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = [kind.decode() for kind in pipe.execute()]
    for key, kind in zip(keys, kinds, strict=True):
        pipe.execute_command(SIZE.get(kind, "EXISTS"), key)
    sizes = pipe.execute()
    return {key: (kind, int(size)) for key, kind, size in zip(keys, kinds, sizes, strict=True)}


def task_ids(space: dict[str, tuple[str, int]]) -> set[str]:
    """Ids of the task hashes in a snapshot."""
    return {key.split(":task:", 1)[1] for key in space if ":task:" in key}


# -- the property ------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One request and what Redis held around it."""

    r: redis.Redis
    prefix: str
    body: Any
    response: httpx.Response
    before: dict[str, tuple[str, int]]
    after: dict[str, tuple[str, int]]

    def record(self, task_id: str) -> dict[bytes, bytes]:
        """The stored hash of a task the answer names (it must exist)."""
        key = GlobalKeys(self.prefix).queue(queue_of(task_id)).task(task_id)
        client: Any = self.r
        stored: dict[bytes, bytes] = client.hgetall(key)
        assert stored, f"the answer names {task_id}, which is not stored"
        return stored

    def indexed(self, task_id: str, index: str) -> bool:
        """Whether `task_id` is in one index of its queue."""
        keys = GlobalKeys(self.prefix).queue(queue_of(task_id))
        if index == "pending" and self.r.lpos(keys.ready, entry(task_id)) is not None:
            return True
        return self.r.zscore(getattr(keys, index), task_id) is not None


Check = Callable[[Exchange], None]


def post(api: Api, r: redis.Redis, prefix: str, path: str, body: Body, check: Check) -> None:
    """POST, then hold the answer to the property."""
    note(f"POST {path} {body!r}")  # the schemathesis plugin blanks hypothesis' own printing
    before = keyspace(r, prefix)
    response = api.post(path, body)
    after = keyspace(r, prefix)
    event(f"answered {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code < 500, f"{response.status_code} {response.text[:500]}"
    parsed = as_json(body)
    if response.status_code >= 400:
        check_error(response)
        assert after == before, "a refused request changed Redis"
        return
    assert parsed is not NOT_JSON, f"{response.status_code} for a body that is not JSON"
    check(Exchange(r, prefix, parsed, response, before, after))


def check_error(response: httpx.Response) -> None:
    """A 4xx with the one error shape and no traceback."""
    assert 400 <= response.status_code < 500, response.status_code
    assert response.headers["content-type"] == "application/json", response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in response.text


def expected_args(body: dict[str, Any]) -> Any:
    """The handler's positional arguments: `args`, else `payload` as the one argument."""
    if body.get("args") is not None:
        return body["args"]
    return [body["payload"]] if "payload" in body else []


def check_stored(ex: Exchange, body: dict[str, Any], answer: Any, earlier: set[str]) -> str:
    """One task of a 202: the answer's shape, and the record it names holds the body.
    `earlier`: ids stored before this task (a replay names one). Returns the id."""
    assert isinstance(answer, dict) and set(answer) == {"id", "status", "replayed"}, answer
    assert answer["status"] in {"queued", "scheduled"} and isinstance(answer["replayed"], bool)
    task_id: str = answer["id"]
    stored = ex.record(task_id)
    if answer["replayed"]:
        assert task_id in earlier, f"replayed {task_id}, which was not stored before"
        return task_id
    assert task_id not in earlier, f"{task_id} was stored before, yet not replayed"
    model = NewTaskIn.model_validate(body)  # the documented coercions (e.g. "5" -> 5)
    assert queue_of(task_id) == (model.queue or DEFAULT_QUEUE), (task_id, body)
    assert stored[b"name"] == model.name.encode()
    assert orjson.loads(stored.get(b"args", b"[]")) == expected_args(body), stored
    assert orjson.loads(stored.get(b"kwargs", b"{}")) == (body.get("kwargs") or {}), stored
    assert int(stored.get(b"priority", b"0")) == model.priority, stored
    assert stored.get(b"max_retries") == _text(model.max_retries), stored
    assert _float(stored.get(b"timeout")) == model.timeout, stored
    assert stored.get(b"idempotency_key") == _text(model.idempotency_key), stored
    check_state(ex, task_id, stored, answer["status"], model)
    return task_id


def check_state(
    ex: Exchange, task_id: str, stored: dict[bytes, bytes], status: str, model: NewTaskIn
) -> None:
    """ "queued" is pending now, "scheduled" waits in the scheduled set, due when asked."""
    state = stored[b"state"].decode()
    assert (status, state) in {("queued", "pending"), ("scheduled", "scheduled")}, (
        f"answered {status!r}, stored {state!r}: {stored}"
    )
    assert ex.indexed(task_id, state), f"{state} but not in its index"
    if state == "scheduled":
        # due at Redis' clock plus the delay, counted from the enqueue (the id's time: the
        # API's clock, on this machine the same, read just before)
        waited = int(stored[b"due_at"]) - id_millis(task_id)
        if model.delay is not None:
            assert 0 <= waited - round(model.delay * 1000) < 1000, stored
        if model.eta is not None:
            due = datetime.fromtimestamp(int(stored[b"due_at"]) / 1000, UTC)
            assert abs(due - model.eta) < timedelta(seconds=1), (due, model.eta)


def _text(value: object) -> bytes | None:
    return None if value is None else str(value).encode()


def _float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def new_ids(ex: Exchange, answers: list[Any]) -> None:
    """Exactly the announced, not replayed, tasks were stored."""
    fresh = {a["id"] for a in answers if not a["replayed"]}
    assert task_ids(ex.after) - task_ids(ex.before) == fresh
    assert task_ids(ex.before) <= task_ids(ex.after)


def check_seed(ex: Exchange) -> None:
    """POST /task: 202 {"status": "queued", "task_id"}; the payload is the one argument."""
    assert ex.response.status_code == 202, ex.response.text
    answer = ex.response.json()
    assert isinstance(answer, dict) and set(answer) == {"status", "task_id"}, answer
    assert answer["status"] == "queued"
    task_id = answer["task_id"]
    model = SeedTask.model_validate(ex.body)
    stored = ex.record(task_id)
    assert queue_of(task_id) == DEFAULT_QUEUE
    assert stored[b"name"] == model.type.encode()
    assert orjson.loads(stored[b"args"]) == [ex.body.get("payload")], stored
    assert stored[b"state"] == b"pending" and ex.indexed(task_id, "pending"), stored
    new_ids(ex, [{"id": task_id, "replayed": False}])


def check_task(ex: Exchange) -> None:
    """POST /v1/tasks: 202 and one Enqueued; Location names it."""
    assert ex.response.status_code == 202, ex.response.text
    answer = ex.response.json()
    task_id = check_stored(ex, ex.body, answer, task_ids(ex.before))
    assert ex.response.headers["Location"] == f"/v1/tasks/{task_id}"
    new_ids(ex, [answer])


def check_batch(ex: Exchange) -> None:
    """POST /v1/tasks/batch: 202 and one Enqueued per task, in order."""
    assert ex.response.status_code == 202, ex.response.text
    answer = ex.response.json()
    assert isinstance(answer, dict) and set(answer) == {"tasks"}, answer
    tasks = ex.body["tasks"]
    assert len(answer["tasks"]) == len(tasks) <= ApiSettings().max_batch
    earlier = task_ids(ex.before)
    for body, each in zip(tasks, answer["tasks"], strict=True):
        earlier.add(check_stored(ex, body, each, earlier))  # a later task may replay it
    new_ids(ex, answer["tasks"])


def dead_letters(r: redis.Redis, prefix: str) -> dict[str, tuple[str, bytes]]:
    """Every dead letter: id -> (queue, task name)."""
    client: Any = r
    keys = GlobalKeys(prefix)
    found = {}
    for queue in sorted(m.decode() for m in client.smembers(keys.queues)):
        for member in client.zrange(keys.queue(queue).dead, 0, -1):
            task_id = member.decode()
            found[task_id] = (queue, client.hget(keys.queue(queue).task(task_id), "name"))
    return found


def check_replay(ex: Exchange, dead_before: dict[str, tuple[str, bytes]]) -> None:
    """POST /v1/dead/retry: 200 {"requeued": n}, and exactly the matching dead letters
    moved to pending."""
    assert ex.response.status_code == 200, ex.response.text
    answer = ex.response.json()
    assert isinstance(answer, dict) and set(answer) == {"requeued"}, answer
    model = ReplayIn.model_validate(ex.body)
    matching = {
        task_id
        for task_id, (queue, name) in dead_before.items()
        if model.queue in (None, queue) and model.task in (None, name.decode())
    }
    moved = set(dead_before) - set(dead_letters(ex.r, ex.prefix))
    assert moved == matching, (model, moved, matching)
    assert answer["requeued"] == len(moved)
    for task_id in moved:
        assert ex.record(task_id)[b"state"] == b"pending" and ex.indexed(task_id, "pending")
    assert task_ids(ex.after) == task_ids(ex.before)


#: The dead letters the dead-letter test keeps seeded: (queue, task name, how many).
DEAD = (("alpha", "a", 2), ("alpha", "b", 1), ("beta", "a", 1))


def seed_dead(app: Conveyor) -> None:
    """Dead letters made by the real scripts: enqueue, claim, dead-letter."""
    for queue, name, count in DEAD:
        for n in range(count):
            app.enqueue(name, n, queue=queue)
    broker = app.sync_broker()
    error = orjson.dumps({"type": "ValueError", "message": "seeded", "traceback": ""})
    for queue in sorted({queue for queue, _, _ in DEAD}):
        claim = broker.run(broker.ops.claim(queue, 100, "fuzz-seed"))
        broker.execute([broker.ops.dead_letter(task, "error", error) for task in claim.tasks])


FUZZ = hypothesis.settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@FUZZ
@given(body=bodies(seed_tasks(), lambda nest: b'{"type": "x", "payload": ' + nest + b"}"))
def test_post_task(api: Api, r: redis.Redis, prefix: str, body: Body) -> None:
    post(api, r, prefix, "/task", body, check_seed)


@FUZZ
@given(body=bodies(new_tasks(), lambda nest: b'{"name": "x", "payload": ' + nest + b"}"))
@example(body=Body(b'{"name": "x", "delay": 0.0001}'))  # a delay under half a millisecond
def test_post_v1_tasks(api: Api, r: redis.Redis, prefix: str, body: Body) -> None:
    post(api, r, prefix, "/v1/tasks", body, check_task)


@FUZZ
@given(body=bodies(BATCHES, lambda nest: b'{"tasks": [{"name": "x", "args": ' + nest + b"}]}"))
def test_post_v1_tasks_batch(api: Api, r: redis.Redis, prefix: str, body: Body) -> None:
    post(api, r, prefix, "/v1/tasks/batch", body, check_batch)


@FUZZ
@given(body=bodies(REPLAYS, lambda nest: b'{"queue": ' + nest + b"}"))
def test_post_v1_dead_retry(
    api: Api, app: Conveyor, r: redis.Redis, prefix: str, body: Body
) -> None:
    if len(dead_letters(r, prefix)) < sum(count for _, _, count in DEAD):
        seed_dead(app)
    dead_before = dead_letters(r, prefix)
    post(api, r, prefix, "/v1/dead/retry", body, lambda ex: check_replay(ex, dead_before))


CHECKS: dict[str, Check] = {
    "/task": check_seed,
    "/v1/tasks": check_task,
    "/v1/tasks/batch": check_batch,
}


@FUZZ
@given(path=st.sampled_from([*CHECKS, "/v1/dead/retry"]), content=RAW, content_type=CONTENT_TYPES)
def test_raw_bytes(
    api: Api, r: redis.Redis, prefix: str, path: str, content: bytes, content_type: str | None
) -> None:
    dead_before = dead_letters(r, prefix)
    check = CHECKS.get(path) or (lambda ex: check_replay(ex, dead_before))
    post(api, r, prefix, path, Body(content, content_type), check)
