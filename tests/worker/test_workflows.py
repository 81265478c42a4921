"""The worker's side of workflows: a task dead-lettered by a script (its workers kept
dying: found by the recoverer or the reaper, or its pool process died) fails its node, as
a handler's last failure does; a drain mid-step gives the task back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

from conveyor import Conveyor, WorkflowFailedError, chain, serializers
from conveyor.broker.keys import QueueKeys
from conveyor.producer import Message
from conveyor.worker.completer import Completer
from conveyor.worker.executor import Executor
from conveyor.worker.leases import Leases
from conveyor.worker.reaper import Reaper
from conveyor.worker.recoverer import Recoverer
from conveyor.worker.stats import StatsWriter
from conveyor.worker.workflows import WorkflowStepper
from tests.broker.seed import SHORT_LEASE, claim_one, wait_leases_expired
from tests.support import handlers
from tests.support.worker import running_worker


@pytest.mark.parametrize("policy", ["stop", "continue"])
async def test_a_poison_pill_recovered_to_the_dead_letters_fails_its_node(
    app_with: Callable[..., Conveyor], r: redis.Redis, keys: QueueKeys, policy: str
) -> None:
    app = app_with(lease_timeout=SHORT_LEASE, max_crashes=1)
    handle = app.enqueue(chain(Message("a"), Message("b")), on_failure=policy)  # type: ignore[call-overload]
    broker = app.sync_broker()
    task = claim_one(broker, "w1")
    assert task.workflow == f"{handle.id}:1"
    wait_leases_expired(r, keys)
    stepper = WorkflowStepper(app.async_broker())
    await Recoverer(app.async_broker(), ("default",), on_dead=stepper.dead_lettered).sweep()
    view = handle.view()
    assert view is not None
    node = view.nodes[1]
    assert node.state == "failed"
    assert (node.result["state"], node.result["error"]["type"]) == ("dead", "WorkerLostError")
    if policy == "stop":
        with pytest.raises(WorkflowFailedError, match="WorkerLostError"):
            handle.result(timeout=1)
        assert view.nodes[2].state == "waiting"
    else:  # the next step starts with the error description as its input
        [follower] = broker.run(broker.ops.claim("default", 5, "w1")).tasks
        assert (follower.name, follower.workflow) == ("b", f"{handle.id}:2")
        assert follower.args is not None and b"WorkerLostError" in follower.args


async def test_a_poison_pill_the_reaper_dead_letters_fails_its_node(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with(max_crashes=1)
    handle = app.enqueue(chain(Message("a"), Message("b")))
    broker = app.async_broker()
    info = serializers.dumps({"queues": ["default"]})
    await broker.run(broker.ops.register_worker("w1", info, 0))
    [task] = (await broker.run(broker.ops.claim("default", 1, "w1"))).tasks
    stepper = WorkflowStepper(broker)
    await Reaper(broker, "reaper", on_dead=stepper.dead_lettered).take_back(["w1"])
    with pytest.raises(WorkflowFailedError, match="WorkerLostError") as failed:
        await handle.result_async(timeout=1)
    assert failed.value.error is not None and failed.value.error["task_id"] == task.id


async def test_a_drain_during_a_step_gives_the_task_back_and_its_rerun_starts_the_next_once(
    app_with: Callable[..., Conveyor], r: redis.Redis, keys: QueueKeys
) -> None:
    """A worker told to stop cancels a task whose workflow step is still in flight: the
    task goes back to pending (not acked: what follows may not be enqueued yet), and its
    next run repeats the step and starts the next node once."""
    app = app_with()

    @app.task(name="d.num")
    def num(n: int) -> int:
        return n

    @app.task(name="d.add")
    def add(total: int, n: int) -> int:
        return total + n

    handle = app.enqueue(chain(num.message(1), add.message(2)))
    broker = app.async_broker()
    completer = Completer(broker, Leases())
    executor = Executor(app, completer, StatsWriter(broker), "w1", 1, 1)
    [task] = (await broker.run(broker.ops.claim("default", 1, "w1"))).tasks

    async def step_in_flight() -> None:
        await asyncio.Event().wait()

    stepping = asyncio.create_task(executor._stepped(task, step_in_flight()))
    await asyncio.sleep(0)
    stepping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stepping
    stop = asyncio.Event()
    stop.set()
    await completer.run(stop)  # writes what was queued: the requeue
    record = await app.get_record_async(task.id)
    assert record is not None and record.state == "pending"
    async with running_worker(app):
        assert await handle.result_async(timeout=30) == 3
    view = handle.view()
    assert view is not None and [n.state for n in view.nodes] == ["succeeded"] * 3
    assert view.nodes[1].task_id == task.id  # the same task ran again
    client: Any = r  # replies are bytes
    names = sorted(client.hget(k, "name") for k in client.scan_iter(match=keys.task_prefix + "*"))
    assert names == [b"d.add", b"d.num"]  # each node once
    executor.threads.shutdown()
    executor.processes.shutdown()


async def test_a_pool_process_dying_too_often_fails_its_node(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with(max_crashes=1)
    die = app.task(name="die", executor="process")(handlers.die_in_child)
    handle = await app.enqueue_async(chain(die.message(), Message("never")))
    async with running_worker(app, processes=1):
        with pytest.raises(WorkflowFailedError, match="WorkerLostError") as failed:
            await handle.result_async(timeout=30)
    assert failed.value.error is not None and failed.value.error["state"] == "dead"
