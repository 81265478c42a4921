"""kill -9 the master of a busy Sentinel group: the sentinels promote the replica, and the
producer, a worker subprocess and the API carry on without a restart. Replication is
asynchronous, so the last acknowledged writes may be lost: they are counted and reported,
and everything else must be accounted for."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.errors import NotReplicatedError
from conveyor.settings import Settings
from tests.api.conftest import api_client
from tests.e2e.test_sentinel import BINARY
from tests.support.failover import Producer, accepts, account, acked_since, settle
from tests.support.processes import WorkerProcess
from tests.support.relay import Relay
from tests.support.sentinel import SentinelGroup, ask, wait_for
from tests.support.worker import wait_until

pytestmark = pytest.mark.slow

#: Tasks enqueued before the replica is held behind, and while it is.
BEFORE, HELD = 20, 10


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    """A Sentinel group of this test alone: it kills its master."""
    made = SentinelGroup(BINARY).start()
    yield made
    made.stop()


@pytest.mark.parametrize(("fault", "durable"), [("kill", False), ("pause", False), ("pause", True)])
async def test_a_failover_under_load_is_followed_without_a_restart(
    group: SentinelGroup, prefix: str, tmp_path: Path, fault: str, durable: bool
) -> None:
    """`kill`: kill -9 of the master. `pause`: SIGSTOP until the replica is promoted, then
    SIGCONT: the old master comes back believing it is the master, with the clients'
    connections still open, until the sentinels demote it (and becomes the new master's
    replica, so durable enqueues are confirmed again). Without `durable`, a loss is counted
    and reported; with it, every acknowledged task must be there."""
    settings = Settings(
        redis_url=group.url,
        prefix=prefix,
        lease_timeout=2.0,
        retry_backoff_base=0.01,
        retry_backoff_cap=0.05,
    )
    runs = tmp_path / "runs.txt"
    runs.touch()
    app = Conveyor(settings=settings)
    producer = Producer(app, durable)
    worker = WorkerProcess(
        settings,
        tmp_path,
        "--concurrency",
        "16",
        app="tests.support.failover_tasks:app",
        CONVEYOR_TEST_RUNS=str(runs),
    )
    try:
        async with api_client(settings) as api:
            assert (await api.post("/task", json={"type": "note", "payload": 0})).status_code == 202
            producer.start()
            await wait_until(lambda: acked_since(producer, 0.0, 300), 20, "the load")
            killed = time.monotonic()
            group.kill_master() if fault == "kill" else group.pause_master()
            await asyncio.to_thread(group.wait_for_failover, 20)
            promoted, promoted_wall = time.monotonic(), time.time()
            if fault == "pause":
                group.resume_master()
                await wait_until(lambda: asyncio.to_thread(group.demoted), 20, "the demotion")
            await wait_until(lambda: acked_since(producer, killed, 100), 20, "acks after the kill")
            assert app.inspector.server_address() == f"127.0.0.1:{group.replica.port}"
            # the API's clients follow the new master too, with no restart
            await wait_until(lambda: accepts(api), 15, "the API to enqueue again")
            stats = await api.get("/stats")
            assert stats.status_code == 200, stats.text
            producer.stopping.set()
            await asyncio.to_thread(producer.join, 10)
        acked = [task_id for _, task_id in producer.acked]
        lost, states = await asyncio.to_thread(settle, app, acked)
        assert worker.alive(), worker.log()  # the same worker process, never restarted
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 20) == 0, worker.log()
    finally:
        producer.stopping.set()
        worker.stop()
        app.close()
        await app.aclose()
    account(
        f"Sentinel failover ({fault}{', durable' if durable else ''})",
        producer,
        lost,
        states,
        runs,
        killed,
        promoted,
        promoted_wall,
    )


@pytest.fixture
def relayed() -> Iterator[tuple[SentinelGroup, Relay]]:
    """A Sentinel group whose replica replicates through a relay. The sentinels' failover
    timeout is long: it is also how long they leave a replica replicating from another
    address than the master's before they point it at the master (+fix-slave-config)."""
    group = SentinelGroup(BINARY, failover_timeout_ms=60_000)
    relay = Relay(group.data_port(group.master))
    group.replicate_through(relay.port)
    try:
        yield group.start(), relay
    finally:
        relay.close()
        group.stop()


@pytest.mark.parametrize("durable", [False, True], ids=["plain", "durable"])
async def test_a_replica_held_behind_loses_acknowledged_tasks_unless_they_are_durable(
    relayed: tuple[SentinelGroup, Relay], prefix: str, durable: bool
) -> None:
    """The replica gets nothing while the relay is paused; the master takes HELD enqueues,
    is killed, and the sentinels promote the replica (the only one: it is still connected,
    so eligible, however far behind). Without `durable`, every task enqueued during the
    pause was acknowledged and is lost; with it, none was acknowledged (each raised
    NotReplicatedError: the replica's REPLCONF ACKs still reach the master, but name the
    offset it had before the pause), and no acknowledged task is lost."""
    group, relay = relayed
    settings = Settings(redis_url=group.url, prefix=prefix, replica_timeout=0.1)
    app = Conveyor(settings=settings)
    acked: list[str] = []
    unconfirmed: list[str] = []
    try:
        acked += [app.enqueue("note", n, durable=durable).id for n in range(BEFORE)]
        wait_for(lambda: _in_sync(group), 10, "the replica to have the first tasks")
        relay.pause()
        for n in range(HELD):
            try:
                acked.append(app.enqueue("note", n, durable=durable).id)
            except NotReplicatedError as exc:
                unconfirmed += exc.stored
        wait_for(lambda: relay.held > 0, 5, "the relay to hold the master's writes")
        killed = time.monotonic()
        group.kill_master()
        relay.close()  # what it held dies with the master
        await asyncio.to_thread(group.wait_for_failover, 20)
        promoted = time.monotonic() - killed
        replica = f"127.0.0.1:{group.data_port(group.replica)}"
        wait_for(lambda: app.inspector.server_address() == replica, 10, "the new master")
        lost = [task_id for task_id in acked if app.inspector.task(task_id) is None]
        gone = [task_id for task_id in unconfirmed if app.inspector.task(task_id) is None]
    finally:
        app.close()
    print(
        f"\nHeld-back replica, kill -9 ({'durable' if durable else 'plain'}): "
        f"{len(acked)} acknowledged, {len(lost)} lost; {len(unconfirmed)} stored but "
        f"unconfirmed (NotReplicatedError), {len(gone)} of them gone; promotion "
        f"{promoted:.2f}s after the kill"
    )
    if durable:
        assert (len(acked), len(unconfirmed), lost) == (BEFORE, HELD, [])
        assert len(gone) == HELD  # what the error warned of: never acknowledged
    else:
        assert len(lost) == HELD > 0 and lost == acked[BEFORE:], "the held tasks are lost"


def _in_sync(group: SentinelGroup) -> bool:
    """Whether the replica has processed everything the master wrote."""
    master = ask(group.master.port, "INFO", "replication")
    replica = ask(group.replica.port, "INFO", "replication")
    return bool(master["master_repl_offset"] == replica["slave_repl_offset"])
