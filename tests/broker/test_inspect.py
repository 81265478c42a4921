"""inspect.py: the Inspector's sync and async faces give the same answers and make the
same changes, method by method, on twin keyspaces (one seeded, one its exact copy).

What each answer means is tested where it is used: the API's routes (tests/api), the CLI's
commands (tests/cli), fsck (test_fsck.py) and the scripts underneath (test_<script>.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from conveyor import Conveyor, serializers
from conveyor.broker.dead_letters import DeadFilter
from conveyor.broker.inspect import AsyncInspector, SyncInspector
from conveyor.broker.keys import GlobalKeys
from conveyor.broker.records import QueueStats
from conveyor.errors import TaskConflictError, TaskNotFoundError
from conveyor.ids import new_task_id


@dataclass(frozen=True)
class Seeded:
    """Ids of a keyspace with every kind of task: queue alpha has two dead `fails`, an
    active, a pending and a scheduled task; queue beta is paused, with a dead `ghost` and
    a pending task. Worker w1 is registered."""

    fails: tuple[str, str]
    ghost: str
    active: str
    pending: str
    scheduled: str
    paused: str

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


def seed(app: Conveyor, task_in: Callable[..., str], r: redis.Redis) -> Seeded:
    fails = (task_in("dead", "fails", queue="alpha"), task_in("dead", "fails", queue="alpha"))
    ghost = task_in("dead", "ghost", queue="beta")
    active = task_in("active", queue="alpha")
    broker = app.sync_broker()
    info = serializers.dumps({"id": "w1", "queues": ["alpha", "beta"]})
    broker.run(broker.ops.register_worker("w1", info, int(time.time() * 1000)))
    r.set(GlobalKeys(app.settings.prefix).queue("beta").paused, 1)
    return Seeded(
        fails=fails,
        ghost=ghost,
        active=active,
        pending=app.enqueue("job", queue="alpha", priority=3).id,
        scheduled=app.enqueue("job", queue="alpha", delay=60).id,
        paused=app.enqueue("job", queue="beta").id,
    )


def clone(r: redis.Redis, source: str, target: str) -> None:
    """Copy every key under prefix `source` to prefix `target`, with its time to live
    (task ids hold no prefix, so the copy is the same keyspace under another name)."""
    client: Any = r
    for key in client.scan_iter(match=f"{source}:*", count=1000):
        ttl = max(0, int(client.pttl(key)))
        client.restore(target.encode() + key[len(source) :], ttl, client.dump(key))


@dataclass
class Twins:
    """The seeded keyspace read by a sync Inspector, its copy by an async one."""

    ids: Seeded
    sync: SyncInspector
    async_: AsyncInspector


@pytest.fixture
async def twins(
    app: Conveyor,
    app_with: Callable[..., Conveyor],
    task_in: Callable[..., str],
    r: redis.Redis,
    prefix: str,
) -> Twins:
    ids = seed(app, task_in, r)
    twin = app_with(prefix=f"{prefix}-twin")
    clone(r, prefix, twin.settings.prefix)
    return Twins(ids, app.inspector, twin.async_inspector())


def comparable(result: Any) -> Any:
    """`result` with each queue's lag, which grows between two calls, set aside."""
    if isinstance(result, QueueStats):
        assert result.lag_seconds >= 0
        return dataclasses.replace(result, lag_seconds=0.0)
    if isinstance(result, list | tuple):
        return type(result)(comparable(item) for item in result)
    return result


def lags(result: Any) -> list[float]:
    """The lag of each queue in `result`."""
    if isinstance(result, QueueStats):
        return [result.lag_seconds]
    if isinstance(result, list | tuple):
        return [lag for item in result for lag in lags(item)]
    return []


#: A call's arguments, built from the seeded ids.
Arguments = Callable[[Seeded], tuple[tuple[Any, ...], dict[str, Any]]]
UNKNOWN = new_task_id("alpha")


def resolve(ids: Seeded, value: Any) -> Any:
    """`value`, where a string naming a Seeded field stands for its id (ids, in a list)."""
    if isinstance(value, str) and value in Seeded.__dataclass_fields__:
        return ids[value]
    if isinstance(value, list):
        found = [resolve(ids, item) for item in value]
        return [i for item in found for i in (item if isinstance(item, tuple) else [item])]
    return value


#: Arguments that are never ids, though spelled like a seeded field ("fails", "pending").
NOT_IDS = ("task_name", "state")


def args(*positional: Any, **named: Any) -> Arguments:
    """The arguments of one call, ids resolved once the keyspace is seeded (a task name
    or a state is a name, even one spelled like a seeded field: "fails", "pending")."""
    return lambda ids: (
        tuple(resolve(ids, v) for v in positional),
        {k: v if k in NOT_IDS else resolve(ids, v) for k, v in named.items()},
    )


#: Every method of both faces, by a case name: (method, its arguments).
CASES: dict[str, tuple[str, Arguments]] = {
    "queue_names": ("queue_names", args()),
    "queue_stats": ("queue_stats", args()),
    "queue_stats-named": ("queue_stats", args(["beta", "alpha", "never"])),
    "queue": ("queue", args("alpha")),
    "queue-unknown": ("queue", args("never")),
    "set_paused-pause": ("set_paused", args("alpha", True)),
    "set_paused-resume": ("set_paused", args("beta", False)),
    "set_paused-new-queue": ("set_paused", args("gamma", True)),
    "task-pending": ("task", args("pending")),
    "task-dead": ("task", args("ghost")),
    "task-unknown": ("task", args(UNKNOWN)),
    "task-malformed": ("task", args("garbage")),
    "cancel-pending": ("cancel", args("pending")),
    "cancel-scheduled": ("cancel", args("scheduled")),
    "cancel-active": ("cancel", args("active")),
    "workers": ("workers", args()),
    "ping": ("ping", args()),
    "dead_letters": ("dead_letters", args()),
    "dead_letters-page": ("dead_letters", args(offset=1, limit=1)),
    "dead_letters-queue": ("dead_letters", args(["beta"])),
    "dead_letters-task_name": ("dead_letters", args(task_name="fails")),
    "dead_letters-task_name-page": ("dead_letters", args(["alpha"], task_name="fails", limit=1)),
    "dead_letter": ("dead_letter", args("ghost")),
    "dead_letter-not-dead": ("dead_letter", args("pending")),
    "replay": ("replay", args(["fails", "pending", UNKNOWN])),
    "replay_all": ("replay_all", args()),
    "replay_all-filtered": ("replay_all", args(["alpha", "beta"], "ghost")),
    "delete_dead": ("delete_dead", args(["fails", "active"])),
    "purge_dead": ("purge_dead", args()),
    "purge_dead-queue": ("purge_dead", args(["alpha"])),
    **{
        f"tasks-{state}": ("tasks", args("alpha", state=state))
        for state in ("pending", "active", "scheduled", "retrying", "dead")
    },
    "tasks-dead-newest-page": ("tasks", args("alpha", state="dead", newest_first=True, limit=1)),
    "tasks-dead-offset": ("tasks", args("alpha", state="dead", offset=1)),
    "tasks-unknown-queue": ("tasks", args("never", state="pending")),
    "dead_letters-where-text": ("dead_letters", args(where=DeadFilter(text="BROKEN"))),
    "dead_letters-where-name-age": (
        "dead_letters",
        args(where=DeadFilter(task_name="fails", max_age=3600), limit=1),
    ),
    "dead_letters-where-too-old": ("dead_letters", args(where=DeadFilter(min_age=3600))),
    "replay_all-where": ("replay_all", args(where=DeadFilter(task_name="fails"))),
    "replay_all-where-queue": ("replay_all", args(["beta"], where=DeadFilter(text="value"))),
    "replay_edited": ("replay_edited", args("ghost", [1, "two"], {"three": 3})),
    "replay_edited-not-dead": ("replay_edited", args("pending", [], {})),
    "delete_dead_matching": ("delete_dead_matching", args(["alpha"], DeadFilter(text="error"))),
    "delete_dead_matching-all": ("delete_dead_matching", args(None, DeadFilter(max_age=3600))),
    "run_now-scheduled": ("run_now", args("scheduled")),
    "delete_task-pending": ("delete_task", args("pending")),
    "delete_task-dead": ("delete_task", args("ghost")),
    "delete_task-scheduled": ("delete_task", args("scheduled")),
}


@pytest.mark.parametrize("case", CASES)
async def test_both_faces_answer_and_change_the_same(twins: Twins, case: str) -> None:
    method, build = CASES[case]
    positional, named = build(twins.ids)
    sync = getattr(twins.sync, method)(*positional, **named)
    asynchronous = await getattr(twins.async_, method)(*positional, **named)
    assert comparable(asynchronous) == comparable(sync)
    for one, other in zip(lags(asynchronous), lags(sync), strict=True):
        assert abs(one - other) < 5.0
    # and the same changes: every queue and every dead letter read alike afterwards
    after_sync = (twins.sync.queue_stats(), twins.sync.dead_letters(limit=100))
    after_async = (await twins.async_.queue_stats(), await twins.async_.dead_letters(limit=100))
    assert comparable(after_async) == comparable(after_sync)


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("ghost", TaskConflictError),
        (UNKNOWN, TaskNotFoundError),
        ("not-an-id", TaskNotFoundError),
    ],
)
async def test_cancel_raises_the_same_named_error_on_both_faces(
    twins: Twins, target: str, error: type[Exception]
) -> None:
    task_id = resolve(twins.ids, target)
    with pytest.raises(error) as raised_sync:
        twins.sync.cancel(task_id)
    with pytest.raises(error) as raised_async:
        await twins.async_.cancel(task_id)
    assert str(raised_async.value) == str(raised_sync.value)
    assert task_id in str(raised_sync.value)


@pytest.mark.parametrize(
    ("method", "target", "error"),
    [
        ("run_now", "pending", TaskConflictError),
        ("run_now", "active", TaskConflictError),
        ("run_now", "ghost", TaskConflictError),
        ("run_now", UNKNOWN, TaskNotFoundError),
        ("run_now", "not-an-id", TaskNotFoundError),
        ("delete_task", "active", TaskConflictError),
        ("delete_task", UNKNOWN, TaskNotFoundError),
        ("delete_task", "not-an-id", TaskNotFoundError),
    ],
)
async def test_run_now_and_delete_task_raise_the_same_named_error_on_both_faces(
    twins: Twins, method: str, target: str, error: type[Exception]
) -> None:
    task_id = resolve(twins.ids, target)
    with pytest.raises(error) as raised_sync:
        getattr(twins.sync, method)(task_id)
    with pytest.raises(error) as raised_async:
        await getattr(twins.async_, method)(task_id)
    assert str(raised_async.value) == str(raised_sync.value)
    assert task_id in str(raised_sync.value)
    # a refusal changes nothing: the seeded keyspace reads as before
    assert_as_seeded(twins.sync)


@pytest.mark.parametrize(
    ("method", "target", "state"),
    [("run_now", "pending", "pending"), ("delete_task", "active", "active")],
)
def test_a_conflict_names_the_state_the_task_is_in(
    twins: Twins, method: str, target: str, state: str
) -> None:
    with pytest.raises(TaskConflictError) as raised:
        getattr(twins.sync, method)(twins.ids[target])
    assert raised.value.state == state


def assert_as_seeded(inspector: SyncInspector) -> None:
    """The keyspace holds what `seed` made: depths per queue, dead letters, the worker."""
    stats = {s.name: comparable(s) for s in inspector.queue_stats()}
    assert stats == {
        "alpha": QueueStats("alpha", pending=1, active=1, scheduled=1, dead=2, paused=False),
        "beta": QueueStats("beta", pending=1, active=0, scheduled=0, dead=1, paused=True),
    }
    assert inspector.dead_letters()[0] == 3
    assert [w["id"] for w in inspector.workers()] == ["w1"]


async def test_the_seeded_keyspace_has_every_kind_of_task(twins: Twins) -> None:
    """The cases above compare like with like only if the seed holds what they need."""
    assert_as_seeded(twins.sync)
    _, letters = twins.sync.dead_letters()
    assert sorted(r.id for r in letters) == sorted([*twins.ids.fails, twins.ids.ghost])
