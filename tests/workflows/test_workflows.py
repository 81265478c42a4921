"""Workflows end to end: real workers run chains, groups and chords, nested; failures stop
or continue them; SIGKILLed worker subprocesses neither lose a node nor start one twice.
The long proofs (a chord of 1,000, a chain of 50) are `python -m tests.workflows`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis

from conveyor import Conveyor, WorkflowFailedError, WorkflowHandle, chain, chord, group
from conveyor.broker.ops import Op
from conveyor.broker.steps import Steps, drive, drive_async
from conveyor.broker.workflows import Step, advance, launch
from conveyor.errors import WorkflowNotFoundError
from conveyor.settings import Settings
from conveyor.worker.workflows import Relauncher
from conveyor.workflow import _result, begin, workflow_ops
from tests.support.worker import running_worker
from tests.workflows import proofs


@pytest.fixture
def wf(app: Conveyor) -> Conveyor:
    """The app with the tasks these tests chain."""

    @app.task(name="t.num")
    def num(n: int) -> int:
        return n

    @app.task(name="t.add")
    def add(total: int, n: int) -> int:
        return total + n

    @app.task(name="t.total")
    def total(values: list[int]) -> int:
        return sum(values)

    @app.task(name="t.echo")
    def echo(value: object) -> object:
        return value

    @app.task(name="t.boom", max_retries=0)
    def boom(*_: object) -> None:
        raise ValueError("boom")

    return app


async def test_a_chain_of_groups_and_chords_nested(wf: Conveyor) -> None:
    num, add, total, echo = (wf.tasks[f"t.{n}"] for n in ("num", "add", "total", "echo"))
    workflow = chain(
        num.message(1),
        group([add.message(10), chain(add.message(100), add.message(1000))]),
        chord([total.message(), echo.message()], echo.message()),
    )
    handle = await wf.enqueue_async(workflow)
    async with running_worker(wf):
        result = await handle.result_async(timeout=30)
    # 1 -> [11, 1101] -> [1112, [11, 1101]]
    assert result == [1112, [11, 1101]]
    assert await handle.status_async() == "succeeded"
    view = await handle.view_async()
    assert view is not None and all(n.state == "succeeded" for n in view.nodes)
    await wf.aclose()


async def test_a_result_waits_on_the_tasks_events_not_by_reading_the_workflow_again(
    wf: Conveyor,
) -> None:
    @wf.task(name="t.slow")
    async def slow(n: int) -> int:
        await asyncio.sleep(0.6)
        return n

    handle = wf.enqueue(chain(wf.tasks["t.slow"].message(1), wf.tasks["t.slow"].message()))
    reads: list[str] = []
    broker = wf.async_broker()

    async def counted(op: Op[Any]) -> Any:
        reads.append(str(op.calls[0].args[0]))
        return await broker.run(op)

    async with running_worker(wf):
        done = await drive_async(_result(wf.producer, handle.id, 30), counted)
    assert done == 1
    # 1.2 s of two steps: one read of the outcome at first, one after each step's end (a
    # poll every 50-500 ms would read it five times or more); blocking reads in between
    assert reads.count("HMGET") <= 3, reads
    assert "XREAD" in reads
    await wf.aclose()


async def test_a_group_alone_gathers_its_results_in_order(wf: Conveyor) -> None:
    handle = wf.enqueue(group([wf.tasks["t.num"].message(i) for i in range(20)]))
    async with running_worker(wf, concurrency=8):
        assert await handle.result_async(timeout=30) == list(range(20))
    await wf.aclose()


async def test_stop_fails_the_workflow_and_never_starts_what_follows(wf: Conveyor) -> None:
    workflow = chord(
        [wf.tasks["t.num"].message(1), wf.tasks["t.boom"].message()], wf.tasks["t.total"].message()
    )
    handle = wf.enqueue(workflow)
    async with running_worker(wf):
        with pytest.raises(WorkflowFailedError, match="node 3: ValueError: boom") as failed:
            await handle.result_async(timeout=30)
    assert failed.value.error is not None and failed.value.error["state"] == "dead"
    view = handle.view()
    assert view is not None
    states = {n.id: n.state for n in view.nodes}
    assert states["3"] == "failed" and states["4"] == "waiting"  # the callback never started
    assert view.nodes[4].task_id is None
    await wf.aclose()


async def test_continue_hands_the_callback_an_error_description(wf: Conveyor) -> None:
    workflow = chord(
        [wf.tasks["t.num"].message(1), wf.tasks["t.boom"].message()], wf.tasks["t.echo"].message()
    )
    handle = wf.enqueue(workflow, on_failure="continue")
    async with running_worker(wf):
        result = await handle.result_async(timeout=30)
    assert result[0] == 1
    error = result[1]
    assert (error["node"], error["state"], error["error"]["type"]) == ("3", "dead", "ValueError")
    assert error["task_id"].startswith("default:")
    view = handle.view()
    assert view is not None and view.failures == 1 and view.state == "succeeded"
    await wf.aclose()


def test_a_worker_dying_between_step_enqueue_and_ack_starts_the_callback_once(
    wf: Conveyor,
) -> None:
    """The crash windows, played deterministically: the step of the last child runs and
    its worker "dies" before the enqueue; the task runs again and steps again (then dies
    before its ack); a third run completes. One callback task exists."""
    handle = wf.enqueue(chord([wf.tasks["t.num"].message(1)], wf.tasks["t.total"].message()))
    broker = wf.sync_broker()
    [child] = broker.run(broker.ops.claim("default", 1, "w1")).tasks
    assert child.workflow is not None
    ops = workflow_ops(wf.producer)

    def step() -> Steps[Op[Any], Step]:
        return advance(ops, child.workflow or "", "succeeded", b"1", child.id)

    first = step()
    next(first)  # the step ran ... and the worker died before the enqueue
    broker.run(ops.step(handle.id, "2", "succeeded", b"1", child.id))
    second = drive(step(), broker.run)  # enqueues the callback, then "dies" before the ack
    third = drive(step(), broker.run)
    assert [s.node for s in second.starts] == [s.node for s in third.starts] == ["3"]
    callbacks = broker.run(broker.ops.claim("default", 10, "w1")).tasks
    assert [t.name for t in callbacks] == ["t.total"]
    assert callbacks[0].workflow == f"{handle.id}:3"
    view = wf.inspector.workflow(handle.id)
    assert view is not None and view.nodes[3].task_id == callbacks[0].id


@pytest.mark.parametrize("dies", ["after storing it", "after enqueuing its first tasks"])
async def test_a_workflow_whose_producer_died_before_starting_it_is_started_by_a_worker(
    wf: Conveyor, r: redis.Redis, dies: str
) -> None:
    workflow = chain(group([wf.tasks["t.num"].message(1), wf.tasks["t.num"].message(2)]),
                     wf.tasks["t.total"].message())  # fmt: skip
    workflow_id, procedure = begin(wf.producer, workflow)
    broker = wf.sync_broker()
    # the producer's round trips, played until it "dies": the store, then the enqueue
    request = next(procedure)
    if dies == "after enqueuing its first tasks":
        request = procedure.send(broker.run(request))
    broker.run(request)
    procedure.close()
    launching = wf.settings.prefix + ":{workflows}:launching"
    assert r.zrange(launching, 0, -1) == [workflow_id.encode()]
    handle = WorkflowHandle(wf.producer, workflow_id)
    relauncher = Relauncher(wf.async_broker(), stranded_after=0.0)
    await relauncher.look()
    await relauncher.look()  # a second worker's look finds nothing left to do
    assert r.exists(launching) == 0
    [queued] = wf.inspector.queue_stats(["default"])
    assert queued.pending == 2  # each group member once: a replayed enqueue stores nothing
    async with running_worker(wf):
        assert await handle.result_async(timeout=30) == 3
    await wf.aclose()


def test_a_workflow_started_by_its_producer_is_not_left_launching(
    wf: Conveyor, r: redis.Redis
) -> None:
    wf.enqueue(chain(wf.tasks["t.num"].message(1), wf.tasks["t.add"].message(2)))
    assert r.exists(wf.settings.prefix + ":{workflows}:launching") == 0


def test_the_inspector_shows_each_node(wf: Conveyor) -> None:
    handle = wf.enqueue(chain(wf.tasks["t.num"].message(5), wf.tasks["t.add"].message(1)))
    view = wf.inspector.workflow(handle.id)
    assert view is not None
    assert (view.state, view.policy, view.result, view.error) == ("running", "stop", None, None)
    assert [(n.id, n.kind, n.parent, n.children, n.state, n.name) for n in view.nodes] == [
        ("0", "chain", None, ["1", "2"], "started", None),
        ("1", "task", "0", [], "started", "t.num"),
        ("2", "task", "0", [], "waiting", "t.add"),
    ]
    assert view.nodes[1].task_id is not None and view.nodes[2].task_id is None
    assert wf.inspector.workflow("01" + "Z" * 24) is None
    unknown = WorkflowHandle(wf.producer, "01" + "Z" * 24)
    assert unknown.status() is None
    with pytest.raises(WorkflowNotFoundError):
        unknown.result(timeout=5)
    assert wf.inspector.workflow("not-an-id") is None
    assert view.to_json()["nodes"][1]["name"] == "t.num"
    total, page = wf.inspector.workflows()
    assert (total, [(w.id, w.state) for w in page]) == (1, [(handle.id, "running")])


SIZE = proofs.Size()


@pytest.mark.timeout(180)
def test_a_chord_under_worker_kills_runs_its_callback_once(
    settings: Settings, tmp_path: Path
) -> None:
    figures = proofs.run_chord(settings, tmp_path, SIZE)
    print(figures)
    assert figures.violations == [], figures
    assert figures.enqueued == {"wf.child": SIZE.members, "wf.collect": 1}


@pytest.mark.timeout(180)
def test_a_chain_under_worker_kills_ends_with_the_right_value(
    settings: Settings, tmp_path: Path
) -> None:
    figures = proofs.run_chain(settings, tmp_path, SIZE)
    print(figures)
    assert figures.violations == [], figures
    assert figures.enqueued == {"wf.start": 1, "wf.add": SIZE.steps - 1}


def test_cancelling_a_workflow_task_stops_the_workflow(wf: Conveyor) -> None:
    handle = wf.enqueue(chain(wf.tasks["t.num"].message(1), wf.tasks["t.add"].message(2)))
    view = handle.view()
    assert view is not None and view.nodes[1].task_id is not None
    wf.cancel(view.nodes[1].task_id)
    with pytest.raises(WorkflowFailedError, match="TaskCancelled") as failed:
        handle.result(timeout=5)
    assert failed.value.error is not None and failed.value.error["state"] == "cancelled"
    after = handle.view()
    assert after is not None and [n.state for n in after.nodes] == ["started", "failed", "waiting"]


def test_deleting_a_workflow_task_stops_the_workflow(wf: Conveyor) -> None:
    handle = wf.enqueue(chain(wf.tasks["t.num"].message(1, delay=60), wf.tasks["t.add"].message(2)))
    view = handle.view()
    assert view is not None and view.nodes[1].task_id is not None
    assert wf.inspector.delete_task(view.nodes[1].task_id) == "scheduled"
    with pytest.raises(WorkflowFailedError, match="TaskDeleted") as failed:
        handle.result(timeout=5)
    assert failed.value.error is not None and failed.value.error["state"] == "deleted"
    after = handle.view()
    assert after is not None and [n.state for n in after.nodes] == ["started", "failed", "waiting"]


async def test_a_cancelled_member_hands_continue_s_callback_its_description(
    wf: Conveyor,
) -> None:
    members = [wf.tasks["t.num"].message(1), wf.tasks["t.num"].message(2)]
    handle = wf.enqueue(chord(members, wf.tasks["t.echo"].message()), on_failure="continue")
    view = handle.view()
    assert view is not None and view.nodes[2].task_id is not None
    wf.cancel(view.nodes[2].task_id)
    async with running_worker(wf):
        result = await handle.result_async(timeout=30)
    assert result[1] == 2
    assert (result[0]["state"], result[0]["error"]["type"]) == ("cancelled", "TaskCancelled")
    await wf.aclose()


def test_a_node_keeps_its_message_s_options(wf: Conveyor) -> None:
    first = wf.tasks["t.num"].message(1, queue="other", priority=5, max_retries=7)
    second = wf.tasks["t.add"].message(2, delay=60, timeout=3.5)
    handle = wf.enqueue(chain(first, second))
    broker = wf.sync_broker()
    [task] = broker.run(broker.ops.claim("other", 1, "w1")).tasks
    assert (task.max_retries, task.workflow) == (7, f"{handle.id}:1")
    assert broker.execute([broker.ops.ack([(task, b"1")])]) == [[1]]  # (its step skipped)
    ops = workflow_ops(wf.producer)
    step = broker.run(ops.step(handle.id, "1", "succeeded", b"1", task.id))
    launched = drive(launch(ops, handle.id, step), broker.run)
    assert [s.node for s in launched.starts] == ["2"]
    view = wf.inspector.workflow(handle.id)
    assert view is not None and view.nodes[2].task_id is not None
    record = wf.get_record(view.nodes[2].task_id)
    assert record is not None
    assert (record.state, record.queue, record.timeout, record.args) == (
        "scheduled",
        "default",
        3.5,
        [1, 2],
    )
    assert record.idempotency_key == f"workflow:{handle.id}:2"
    first_record = wf.get_record(task.id)
    assert first_record is not None and first_record.priority == 5
