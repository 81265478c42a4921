"""Durable enqueues and outcomes (Redis WAIT) on a real master and replica: a durable
enqueue returns only once the replica has the task, and says so when it cannot; the
worker's outcomes wait for `min_replicas` and stand when the replicas lag."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner

from conveyor import Conveyor, NotReplicatedError, TaskState
from conveyor.cli import cli
from conveyor.errors import ConfigurationError
from conveyor.options import TaskOptions
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from tests.api.conftest import api_client
from tests.support.worker import running_worker, wait_all


class Pair:
    """A master and its replica, each a redis-server of its own."""

    def __init__(self, binary: str) -> None:
        self.master = RedisServer(binary).start()
        self.replica = RedisServer(
            binary, extra_args=("--replicaof", "127.0.0.1", str(self.master.port))
        ).start()
        self.on_replica = redis.Redis(port=self.replica.port)

    def wait_in_sync(self, timeout: float = 10.0) -> None:
        """Until the master counts the replica as connected and caught up."""
        master = redis.Redis(port=self.master.port)
        deadline = time.monotonic() + timeout
        try:
            while master.wait(1, 100) < 1:
                assert time.monotonic() < deadline, "the replica never caught up"
        finally:
            master.close()

    def stall_replica(self) -> None:
        """Stop the replica's process: connected still, but it confirms nothing."""
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.resume_replica()
        self.on_replica.close()
        for server in (self.replica, self.master):
            server.cleanup()


@pytest.fixture(scope="module")
def pair(redis_server: RedisServer) -> Iterator[Pair]:
    replicated = Pair(redis_server.binary)
    replicated.wait_in_sync()
    yield replicated
    replicated.cleanup()


@pytest.fixture
def on_pair(pair: Pair, settings: Settings) -> Iterator[Conveyor]:
    """An app on the master; replicas are waited for up to 0.25 s."""
    pair.wait_in_sync()
    app = Conveyor(settings=settings.replace(redis_url=pair.master.url, replica_timeout=0.25))
    yield app
    app.close()


def test_a_durable_enqueue_returns_once_the_replica_has_the_task(
    pair: Pair, on_pair: Conveyor
) -> None:
    handle = on_pair.enqueue("job", 1, durable=True)
    keys = on_pair.sync_broker().ops.task_keys(handle.id)
    # read at once, on the replica: WAIT held the reply until it had the write
    assert pair.on_replica.hget(keys.task(handle.id), "state") == b"pending"


def test_a_durable_bulk_enqueue_waits_once_for_all_its_chunks(
    pair: Pair, on_pair: Conveyor
) -> None:
    messages = [on_pair.message("job", i, durable=(i == 0)) for i in range(2500)]
    handles = on_pair.enqueue_many(messages)  # three chunks, one WAIT after the last
    keys = on_pair.sync_broker().ops.queue_keys("default")
    assert pair.on_replica.llen(keys.ready) == len(handles) == 2500


def test_a_stalled_replica_makes_a_durable_enqueue_fail_and_a_plain_one_pass(
    pair: Pair, on_pair: Conveyor, r: redis.Redis
) -> None:
    pair.stall_replica()
    try:
        started = time.monotonic()
        plain = on_pair.enqueue("job", "plain")
        assert time.monotonic() - started < 0.2  # no wait without durable
        with pytest.raises(NotReplicatedError) as caught:
            on_pair.enqueue("job", "durable", durable=True, idempotency_key="k1")
        error = caught.value
        assert (error.replicas, error.needed) == (0, 1)
        assert time.monotonic() - started >= 0.25
    finally:
        pair.resume_replica()
    # stored on the master all the same, and queued
    [stored] = error.stored
    record = on_pair.inspector.task(stored)
    assert record is not None and record.state == TaskState.PENDING
    assert plain.status() == TaskState.PENDING
    # once the replica is back, the same key confirms the same task, stored once
    again = on_pair.enqueue("job", "durable", durable=True, idempotency_key="k1")
    assert (again.id, again.replayed) == (stored, True)


async def test_outcomes_wait_for_min_replicas(pair: Pair, on_pair: Conveyor) -> None:
    app = Conveyor(settings=on_pair.settings.replace(min_replicas=1))
    app.task(name="double")(lambda x: 2 * x)
    try:
        handles = [await app.enqueue_async("double", i) for i in range(20)]
        async with running_worker(app):
            await wait_all(handles, TaskState.SUCCEEDED)
        keys = app.sync_broker().ops.task_keys(handles[0].id)
        assert [pair.on_replica.hget(keys.task(h.id), "state") for h in handles] == [
            b"succeeded"
        ] * 20
    finally:
        await app.aclose()
        app.close()


async def test_outcomes_stand_when_the_replicas_lag_and_say_so(
    settings: Settings, aapp: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    """On the test server, which has no replica: every pipeline of outcomes waits in vain."""
    worker_app = Conveyor(settings=settings.replace(min_replicas=1, replica_timeout=0.05))
    worker_app.task(name="double")(lambda x: 2 * x)
    handles = [aapp.enqueue("double", i) for i in range(5)]
    caplog.set_level(logging.WARNING, "conveyor.worker")
    try:
        async with running_worker(worker_app):
            await wait_all(handles, TaskState.SUCCEEDED)
    finally:
        await worker_app.aclose()
        worker_app.close()
    assert [h.result() for h in handles] == [0, 2, 4, 6, 8]
    assert "0 of the 1 replica(s) asked for confirmed them in time" in caplog.text


def test_min_replicas_applies_to_every_enqueue(settings: Settings) -> None:
    app = Conveyor(settings=settings.replace(min_replicas=1, replica_timeout=0.05))
    try:
        with pytest.raises(NotReplicatedError, match="0 of the 1 replica"):
            app.enqueue("job")
    finally:
        app.close()


async def test_the_api_answers_503_not_replicated_naming_what_was_stored(app: Conveyor) -> None:
    async with api_client(app.settings.replace(replica_timeout=0.05)) as client:
        response = await client.post("/v1/tasks", json={"name": "job", "durable": True})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "not_replicated"
        assert error["details"]["replicas"] == 0 and error["details"]["needed"] == 1
        [stored] = error["details"]["stored"]
        record = app.inspector.task(stored)
        assert record is not None and record.state == TaskState.PENDING
        bad = await client.post("/v1/tasks", json={"name": "job", "durable": "maybe"})
        assert bad.status_code == 422


def test_the_cli_says_why_a_durable_enqueue_failed(settings: Settings) -> None:
    env = {"CONVEYOR_REDIS_URL": settings.redis_url, "CONVEYOR_PREFIX": settings.prefix,
           "CONVEYOR_REPLICA_TIMEOUT": "0.05"}  # fmt: skip
    result = CliRunner().invoke(cli, ["enqueue", "job", "--durable"], env=env)
    assert result.exit_code != 0
    assert "replica(s) asked for confirmed them" in result.output


def test_bad_durability_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="min_replicas"):
        Settings(min_replicas=-1)
    with pytest.raises(ConfigurationError, match="replica_timeout"):
        Settings(replica_timeout=0)
    with pytest.raises(ConfigurationError, match="durable must be true or false"):
        TaskOptions(durable="yes")  # type: ignore[arg-type]
    assert Settings.from_env({"CONVEYOR_MIN_REPLICAS": "2"}).min_replicas == 2
    # a wait for replicas never outlasts half a call's socket timeout
    assert Settings(lease_timeout=2.0, replica_timeout=5.0).replica_wait == 0.25
