"""Leases: the tasks a worker holds, from claim until their outcome is written."""

from __future__ import annotations

import dataclasses

from conveyor.broker.records import ClaimedTask
from conveyor.worker.leases import Leases


def claimed(task_id: str, token: int = 1) -> ClaimedTask:
    """A claimed task of the queue named before the `:` of its id."""
    queue = task_id.split(":")[0]
    return ClaimedTask(task_id, queue, token, 1, "job", None, None, 0, 0, None, None, 0, None, 0)


def test_held_tasks_are_grouped_by_queue_with_their_tokens() -> None:
    leases = Leases()
    for task in (claimed("a:1"), claimed("b:1", token=4), claimed("a:2", token=2)):
        leases.add(task)
    assert len(leases) == 3
    assert leases.by_queue() == {"a": [("a:1", 1), ("a:2", 2)], "b": [("b:1", 4)]}
    assert leases.get("b:1") == claimed("b:1", token=4)
    assert leases.get("b:2") is None


def test_release_forgets_only_the_same_claim() -> None:
    leases = Leases()
    first = claimed("a:1", token=1)
    leases.add(first)
    again = dataclasses.replace(first, token=2)  # claimed again after the first was lost
    leases.add(again)
    leases.release(first)  # the late outcome of the first claim must not drop the second
    assert leases.get("a:1") == again
    leases.release(again)
    leases.release(again)  # releasing twice is harmless
    assert len(leases) == 0 and leases.by_queue() == {}
