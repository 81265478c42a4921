"""Which queue a worker claims from next: strict and weighted order, priority, pausing."""

from __future__ import annotations

import random

import pytest

from conveyor import Conveyor, TaskContext, TaskState
from conveyor.errors import ConfigurationError, InvalidNameError
from conveyor.producer import TaskHandle
from conveyor.worker.selection import QueueSelection
from tests.support.worker import running_worker, wait_all


def _noter(app: Conveyor, order: list[str]) -> None:
    """Register task "note", which appends the queue it was claimed from to `order`."""

    @app.task(name="note")
    async def note(ctx: TaskContext) -> None:
        order.append(ctx.queue)


def _enqueue(app: Conveyor, queue: str, count: int) -> list[TaskHandle]:
    return app.enqueue_many([app.message("note", queue=queue) for _ in range(count)])


async def test_strict_order_serves_a_queue_only_while_those_before_it_are_empty(
    aapp: Conveyor,
) -> None:
    order: list[str] = []
    _noter(aapp, order)
    handles = _enqueue(aapp, "b", 10) + _enqueue(aapp, "a", 10)  # b's are older
    async with running_worker(aapp, "a,b", concurrency=1):
        await wait_all(handles, TaskState.SUCCEEDED, 10, "every task to run")
    assert order == ["a"] * 10 + ["b"] * 10


async def test_weighted_order_favours_heavy_queues_without_starving_light_ones(
    aapp: Conveyor,
) -> None:
    order: list[str] = []
    _noter(aapp, order)
    per_queue = 200
    handles = _enqueue(aapp, "a", per_queue) + _enqueue(aapp, "b", per_queue)
    async with running_worker(aapp, "a:3,b:1", concurrency=1):
        await wait_all(handles, TaskState.SUCCEEDED, 30, "every task to run")
    assert len(order) == 2 * per_queue
    # In the first `per_queue` slots both queues certainly still have work, and each slot
    # goes to a with probability 3/4: a ~ 150, b ~ 50 (sd 6). The bounds are ~5 sd away.
    early = order[:per_queue]
    a_early, b_early = early.count("a"), early.count("b")
    assert b_early >= 20, f"b starved while a had work: {b_early} of {per_queue} early slots"
    assert a_early >= 1.5 * b_early, f"a got {a_early} early slots, b {b_early}"


async def test_higher_priority_runs_first_within_a_queue(aapp: Conveyor) -> None:
    order: list[str] = []

    @aapp.task
    async def labelled(label: str) -> None:
        order.append(label)

    priorities = {"p0": 0, "p5": 5, "m3": -3, "p10": 10, "p5-later": 5, "max": 100, "min": -100}
    handles = aapp.enqueue_many(
        [labelled.message(label, priority=p) for label, p in priorities.items()]
    )
    async with running_worker(aapp, concurrency=1):
        await wait_all(handles, TaskState.SUCCEEDED, 10, "every task to run")
    # equal priorities keep their enqueue order
    assert order == ["max", "p10", "p5", "p5-later", "p0", "m3", "min"]


async def test_a_paused_queue_is_not_claimed_until_resumed(aapp: Conveyor) -> None:
    order: list[str] = []
    _noter(aapp, order)
    inspector = aapp.async_inspector()
    await inspector.set_paused("a", True)
    paused = _enqueue(aapp, "a", 3)
    served = _enqueue(aapp, "b", 3)
    # strict order puts a first: had the pause been ignored, a's tasks would run before b's
    async with running_worker(aapp, "a,b", concurrency=1):
        await wait_all(served, TaskState.SUCCEEDED, 10, "b's tasks to run")
        [stats] = await inspector.queue_stats(["a"])
        assert (stats.paused, stats.pending, stats.active) == (True, 3, 0)
        for handle in paused:
            record = await handle.record_async()
            assert record is not None and (record.state, record.attempts) == (TaskState.PENDING, 0)
        assert order == ["b"] * 3

        await inspector.set_paused("a", False)
        await wait_all(paused, TaskState.SUCCEEDED, 10, "a's tasks to run once resumed")
    assert order == ["b"] * 3 + ["a"] * 3
    [stats] = await inspector.queue_stats(["a"])
    assert (stats.paused, stats.pending) == (False, 0)


# -- QueueSelection.parse ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "names", "weights"),
    [
        ("a", ("a",), None),
        ("a, b ,c", ("a", "b", "c"), None),
        ("a:3,b:1", ("a", "b"), (3, 1)),
        ("a:3,b", ("a", "b"), (3, 1)),  # a missing weight is 1
        (["x", "y:2"], ("x", "y"), (1, 2)),
        ("a,,b,", ("a", "b"), None),  # empty items are ignored
    ],
)
def test_parse_queue_selection(
    spec: str | list[str], names: tuple[str, ...], weights: tuple[int, ...] | None
) -> None:
    selection = QueueSelection.parse(spec)
    assert (selection.names, selection.weights) == (names, weights)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("a:x", "integer"),
        ("a:1.5", "integer"),
        ("a:0", ">= 1"),
        ("a:3,b:-1", ">= 1"),
        ("a,b,a", "twice"),
        ("a:2,a:1", "twice"),
        ("", "at least one queue"),
        (" , ,", "at least one queue"),
        ([], "at least one queue"),
    ],
)
def test_parse_rejects_bad_selections(spec: str | list[str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        QueueSelection.parse(spec)


@pytest.mark.parametrize("spec", ["bad{name}", "has space", "x" * 65])
def test_parse_rejects_invalid_queue_names(spec: str) -> None:
    with pytest.raises(InvalidNameError):
        QueueSelection.parse(spec)


def test_order_is_fixed_when_strict_and_a_weighted_permutation_otherwise() -> None:
    rng = random.Random(7)
    strict = QueueSelection.parse("c,a,b")
    assert all(strict.order(rng) == ["c", "a", "b"] for _ in range(20))
    weighted = QueueSelection.parse("a:6,b:3,c:1")
    orders = [weighted.order(rng) for _ in range(3000)]
    assert all(sorted(o) == ["a", "b", "c"] for o in orders)
    firsts = [o[0] for o in orders]
    # expected 1800 / 900 / 300 (sd <= 27)
    assert 1650 < firsts.count("a") < 1950
    assert 780 < firsts.count("b") < 1020
    assert 200 < firsts.count("c") < 400
