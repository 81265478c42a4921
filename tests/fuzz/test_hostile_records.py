"""Hostile task records fed to one running worker (issue 4, "Bad input, tried").

Each example enqueues a real task and corrupts its record by hand -- wrong types, missing
fields, invalid UTF-8 or JSON, huge payloads, odd names, or a key of another Redis type --
between two normal "canary" tasks. The hostile record must end clearly: succeeded, or
dead with a reason, out of the working indexes and with a retention; or, when its key is
gone, dropped from the index with nothing left for fsck to find. It never stays active,
never leaves every index while its record says it is unfinished, and never runs more
often than its retry budget allows (never at all when its attempt counter cannot be read,
as no claim could be counted). The worker outlives every example, and both canaries
succeed at their first attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import orjson
import pytest
import redis
from hypothesis import HealthCheck, example, given, note

from conveyor import Conveyor
from conveyor.broker.fsck import Finding
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.settings import Settings
from conveyor.worker.runtime import Worker
from tests.fuzz.records import (
    COUNTERS,
    OPTIONS,
    Hostile,
    as_int,
    broken_payloads,
    corrupt,
    other_keys,
    runnable,
)
from tests.support.keyspace import entry
from tests.support.worker import LOAD_SLACK

QUEUE = "fuzz"
#: Short, so a task left in active would be recovered, and seen, within an example.
LEASE = 1.0
#: The handlers' retry budget; a record's own readable `max_retries` overrides it.
BUDGET = 1
#: Longest wait for one example to settle. A healthy one takes a fraction of a second, or
#: a few when a lease must run out first; what this catches is a task that never settles,
#: so the rest is room for a loaded machine (LOAD_SLACK) and costs nothing when all is well.
SETTLE = 8.0 + LOAD_SLACK
INDEXES = ("pending", "active", "scheduled", "dead")
#: States after which nothing more happens to a task.
TERMINAL = {b"succeeded", b"failed", b"dead", b"cancelled"}

# -- observing tasks -------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One atomic look at a task: its key's type, its hash, the indexes holding it, its TTL."""

    kind: str
    record: dict[str, bytes]
    indexes: frozenset[str]
    ttl_ms: int

    def __str__(self) -> str:
        shown = {k: v[:40] + (b"..." if len(v) > 40 else b"") for k, v in self.record.items()}
        return f"{self.kind} in {sorted(self.indexes)} ttl={self.ttl_ms}ms {shown}"


def look(client: Any, keys: QueueKeys, task_id: str) -> Seen:
    """Read a task's key and index entries in one MULTI, so no transition is seen half done."""
    key = keys.task(task_id)
    pipe = client.pipeline(transaction=True)
    pipe.type(key)
    pipe.hgetall(key)  # WRONGTYPE on a key of another type: kept as an error reply
    for index in INDEXES:
        pipe.zscore(getattr(keys, index), task_id)
    pipe.lpos(keys.ready, entry(task_id))  # pending, like the pending ZSET
    pipe.pttl(key)
    kind, record, *scores, listed, ttl = pipe.execute(raise_on_error=False)
    fields = {k.decode(): v for k, v in record.items()} if isinstance(record, dict) else {}
    held = {i for i, score in zip(INDEXES, scores, strict=True) if score is not None}
    if listed is not None:
        held.add("pending")
    return Seen(kind.decode(), fields, frozenset(held), int(ttl))


@dataclass(frozen=True)
class Expect:
    """What a task may do: its claim count before the worker saw it (None when its
    counter cannot be read), the most claims its retry budget allows, and its counter as
    planted."""

    attempts: int | None
    allowed: int
    planted: bytes | None = None


def expectation(seen: Seen) -> Expect:
    """The budget of a record as planted: its own readable max_retries, else the handler's."""
    budget = as_int(seen.record.get("max_retries"))
    attempts = as_int(seen.record["attempts"]) if "attempts" in seen.record else 0
    allowed = max(BUDGET if budget is None else budget, 0) + 1
    return Expect(attempts, allowed, seen.record.get("attempts"))


def lost(seen: Seen) -> bool:
    """In no index while its record says it is unfinished: no worker would ever run it."""
    state = seen.record.get("state")
    return seen.kind == "hash" and not seen.indexes and state not in TERMINAL


def check_budget(task_id: str, seen: Seen, expect: Expect) -> None:
    """Claimed no more often than its budget allows. A counter that cannot be read cannot
    count claims against the budget, so such a task must never be claimed at all: a claim
    rewrites the counter, and the record must still hold it as planted."""
    if expect.attempts is None:
        assert seen.record.get("attempts") == expect.planted, f"{task_id} claimed: {seen}"
        return
    now = as_int(seen.record.get("attempts"))  # None: its record is gone
    runs = 0 if now is None else now - expect.attempts
    assert runs <= expect.allowed, f"{task_id} ran {runs} times, budget {expect.allowed}: {seen}"


def finished(seen: Seen) -> bool:
    """Nothing will happen to the task any more."""
    if seen.indexes - {"dead"}:
        return False
    return seen.kind != "hash" or seen.record.get("state") in TERMINAL


# -- the worker and the harness ---------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """One example in Redis: the hostile task, the canaries around it and what they echo."""

    hostile_id: str
    expect: Expect
    canaries: dict[str, Any]

    @property
    def ids(self) -> list[str]:
        return [self.hostile_id, *self.canaries]


class Fuzz:
    """Plants examples under the queue one real worker serves, and watches them end.

    The worker runs on an event loop of this thread that turns only while an example is
    being watched: hypothesis checks that nothing touches the global `random` while it
    draws an example, and the worker's jittered backoffs do. (It is started here rather
    than with tests.support.worker.running_worker, which hides the task running
    `Worker.run()`; this test must see that task end.)
    """

    def __init__(self, app: Conveyor, client: redis.Redis) -> None:
        self.app = app
        self.client: Any = client  # redis-py's return types are unions of every decoding mode
        self.keys = GlobalKeys(app.settings.prefix).queue(QUEUE)
        self.runner = asyncio.Runner()
        self.worker, self.job = self._start()

    def _start(self) -> tuple[Worker, asyncio.Task[None]]:
        worker = Worker(self.app, QUEUE, concurrency=4, processes=1)

        async def spawn() -> asyncio.Task[None]:
            job = asyncio.create_task(worker.run())
            await asyncio.sleep(0)  # run() has begun: stop() now reaches it
            return job

        return worker, self.runner.run(spawn())

    @property
    def worker_died(self) -> str:
        """Why `Worker.run()` ended ("" while it runs)."""
        if not self.job.done():
            return ""
        return (
            "cancelled" if self.job.cancelled() else f"returned or raised {self.job.exception()!r}"
        )

    @contextlib.contextmanager
    def example(self, hostile: Hostile) -> Iterator[Planted]:
        """Plant one example; forget its tasks after. A failed example may leave the worker
        dying or busy with its tasks, so the next one gets a fresh worker."""
        planted = self.plant(hostile)
        try:
            yield planted
        except BaseException:
            self.remove(planted)
            self._restart()
            raise
        self.remove(planted)

    def _restart(self) -> None:
        self._stop(fast=True)
        self.worker, self.job = self._start()

    def _stop(self, fast: bool = False) -> None:
        self.worker.stop(fast)
        self.runner.run(asyncio.wait({self.job}, timeout=30))
        if self.job.done() and not self.job.cancelled():
            self.job.exception()  # retrieved: it already failed an example

    def plant(self, hostile: Hostile) -> Planted:
        """Enqueue canary, victim, canary; corrupt the victim while the queue is paused."""
        self.client.set(self.keys.paused, 1)
        try:
            first = self.app.enqueue("echo", {"canary": 1}, queue=QUEUE)
            victim = self.app.enqueue("echo", 1, queue=QUEUE)
            corrupt(self.client, self.keys.task(victim.id), hostile)
            planted = look(self.client, self.keys, victim.id)
        finally:
            self.client.delete(self.keys.paused)
        last = self.app.enqueue("echo", {"canary": 2}, queue=QUEUE)  # its signal wakes the worker
        canaries = {first.id: {"canary": 1}, last.id: {"canary": 2}}
        return Planted(victim.id, expectation(planted), canaries)

    def settle(self, planted: Planted) -> dict[str, Seen]:
        """Let the worker run until every task of the example is finished; fail at once on
        a dead worker, a task lost from every index, or one claimed past its budget."""
        return self.runner.run(self._settle(planted))

    async def _settle(self, planted: Planted) -> dict[str, Seen]:
        canary = Expect(0, 1)
        deadline = time.monotonic() + SETTLE
        while True:
            seen = {task_id: look(self.client, self.keys, task_id) for task_id in planted.ids}
            shown = "; ".join(f"{i}: {s}" for i, s in seen.items())
            expect = {task_id: canary for task_id in planted.canaries}
            expect[planted.hostile_id] = planted.expect
            astray = [f"task {i} is in no index, yet {s}" for i, s in seen.items() if lost(s)]
            if astray:  # a worker that is about to die does so now, for the report
                await asyncio.wait({self.job}, timeout=0.5)
            worker = f"the worker {self.worker_died or 'still runs'}"
            assert not astray and not self.worker_died, "\n".join([worker, *astray, shown])
            for task_id, each in seen.items():
                check_budget(task_id, each, expect[task_id])
            if all(finished(each) for each in seen.values()):
                return seen
            assert time.monotonic() < deadline, f"not finished after {SETTLE}s: {shown}"
            await asyncio.sleep(0.02)

    def findings(self, planted: Planted) -> list[Finding]:
        """What fsck reports about the example's tasks."""
        found = self.app.inspector.fsck(queues=[QUEUE])
        return [f for f in found if any(task_id in f.subject for task_id in planted.ids)]

    def remove(self, planted: Planted) -> None:
        """Forget the example's tasks, so the next example starts from a clean queue."""
        pipe = self.client.pipeline(transaction=True)
        for task_id in planted.ids:
            for index in INDEXES:
                pipe.zrem(getattr(self.keys, index), task_id)
            pipe.delete(self.keys.task(task_id))
        pipe.execute()

    def close(self) -> None:
        """Stop the worker gracefully, then the loop."""
        self._stop()
        self.runner.close()


def register(app: Conveyor) -> None:
    """The handlers hostile records name: one that echoes its argument, one that fails."""

    @app.task(name="echo", queue=QUEUE, max_retries=BUDGET)
    async def echo(value: Any) -> Any:
        await asyncio.sleep(0)  # one suspension, where a tiny, negative or NaN timeout fires
        return value

    @app.task(name="fails", queue=QUEUE, max_retries=BUDGET)
    async def fails(value: Any) -> None:
        await asyncio.sleep(0)
        raise ValueError("always fails")


@pytest.fixture
def fuzz(settings: Settings, r: redis.Redis) -> Iterator[Fuzz]:
    """One worker on the fuzz queue, with a short lease, for every example of a test."""
    app = Conveyor(settings=settings.replace(lease_timeout=LEASE))
    register(app)
    harness = Fuzz(app, r)
    try:
        yield harness
    finally:
        harness.close()
        app.close()


# -- the property -----------------------------------------------------------------------


def check_hostile(seen: Seen) -> None:
    """The hostile task ended clearly, in the right index, and will not linger forever."""
    if seen.kind == "none":
        assert not seen.indexes, f"a task whose record is gone is still indexed: {seen}"
        return
    if seen.kind != "hash":
        assert seen.indexes == {"dead"}, f"a non-hash record is kept as a dead letter: {seen}"
        return
    state = seen.record.get("state")
    assert state in {b"succeeded", b"dead", b"failed"}, f"unclear end: {seen}"
    if state == b"succeeded":
        assert "result" in seen.record, f"succeeded without a result: {seen}"
    else:
        assert seen.record.get("reason"), f"{state!r} without a reason: {seen}"
    assert seen.indexes == ({"dead"} if state == b"dead" else set()), f"wrong index: {seen}"
    # docs/design.md: terminal records get a TTL, so Redis memory stays bounded
    assert seen.ttl_ms > 0, f"a finished record without a retention: {seen}"


def check_canary(seen: Seen, value: Any) -> None:
    """A normal task next to the hostile one ran once, cleanly."""
    assert seen.record.get("state") == b"succeeded", f"canary: {seen}"
    assert orjson.loads(seen.record["result"]) == value, f"canary: {seen}"
    assert seen.record.get("attempts") == b"1", f"canary claimed more than once: {seen}"
    assert "crashes" not in seen.record, f"canary lost its worker: {seen}"


FUZZ = hypothesis.settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def run_example(fuzz: Fuzz, hostile: Hostile) -> None:
    """The property, for one hostile record."""
    note(repr(hostile))  # the schemathesis plugin blanks hypothesis' own printing of examples
    with fuzz.example(hostile) as planted:
        seen = fuzz.settle(planted)
        check_hostile(seen[planted.hostile_id])
        for task_id, value in planted.canaries.items():
            check_canary(seen[task_id], value)
        assert fuzz.findings(planted) == []
        assert not fuzz.worker_died, f"the worker {fuzz.worker_died}"


@FUZZ
@given(hostile=runnable(COUNTERS, (b"echo", b"fails")))
@example(hostile=Hostile("hash", {"name": b"echo", "token": b"01"}))  # HINCRBY refuses "01"
@example(hostile=Hostile("hash", {"name": b"fails", "failures": b"1.5"}))  # no budget then
@example(hostile=Hostile("hash", {"name": b"echo", "attempts": b"two"}))  # must never run
def test_corrupt_counters(fuzz: Fuzz, hostile: Hostile) -> None:
    run_example(fuzz, hostile)


@FUZZ
@given(hostile=runnable(OPTIONS, (b"echo",)))  # a bad timeout fails it
def test_corrupt_times_and_options(fuzz: Fuzz, hostile: Hostile) -> None:
    run_example(fuzz, hostile)


@FUZZ
@given(hostile=broken_payloads())
def test_broken_payloads_and_names(fuzz: Fuzz, hostile: Hostile) -> None:
    run_example(fuzz, hostile)


@FUZZ
@given(hostile=other_keys())
def test_task_keys_of_another_type(fuzz: Fuzz, hostile: Hostile) -> None:
    run_example(fuzz, hostile)
