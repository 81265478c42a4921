"""Fixtures of the broker tests: the sync broker, brokers and apps with other settings,
and tasks built in any state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import Settings
from tests.broker.seed import SHORT_LEASE

#: The error a failed attempt of `task_in` records.
ERROR = b'{"type":"ValueError","message":"broken","traceback":""}'


@pytest.fixture
def broker(app: Conveyor) -> SyncBroker:
    """The app's synchronous broker, which runs the scripts under test."""
    return app.sync_broker()


@pytest.fixture
def short_lease(settings: Settings) -> Iterator[Conveyor]:
    """An app on the same keyspace whose claims expire after `SHORT_LEASE` seconds."""
    application = Conveyor(settings=settings.replace(lease_timeout=SHORT_LEASE))
    yield application
    application.close()


@pytest.fixture
def broker_with(settings: Settings) -> Iterator[Callable[..., SyncBroker]]:
    """Makes brokers on the same keyspace with some settings changed; closes them after."""
    made: list[SyncBroker] = []

    def make(**changes: Any) -> SyncBroker:
        made.append(SyncBroker(settings.replace(**changes)))
        return made[-1]

    yield make
    for each in made:
        each.close()


#: `task_in(state, name="job", queue=..., priority=..., ...)`: a task enqueued and taken to
#: `state` through the real transitions; returns its id.
TaskIn = Callable[..., str]


@pytest.fixture
def task_in(app: Conveyor, broker: SyncBroker) -> TaskIn:
    """Builds a task in any state (pending, active, succeeded, retrying, dead, failed,
    cancelled) by enqueueing it and running the scripts a worker would run; the claims
    are worker w1's."""

    def make(
        state: str,
        name: str = "job",
        *,
        queue: str = "default",
        priority: int = 0,
        error: bytes = ERROR,
        retry_in: float = 60.0,
    ) -> str:
        task_id = app.enqueue(name, queue=queue, priority=priority).id
        if state == "pending":
            return task_id
        if state == "cancelled":
            assert broker.run(broker.ops.cancel(task_id)) == (True, "pending")
            return task_id
        [task] = broker.run(broker.ops.claim(queue, 1, "w1")).tasks
        assert task.id == task_id, "another task was ahead of it in the queue"
        calls = {
            "succeeded": broker.ops.ack([(task, b'"done"')]),
            "retrying": broker.ops.retry(task, retry_in, error),
            "dead": broker.ops.dead_letter(task, "error", error),
            "failed": broker.ops.dead_letter(task, "error", error, keep=False),
        }
        if state != "active":  # an ack answers per task, the others once
            assert broker.execute([calls[state]]) == ([[1]] if state == "succeeded" else [1])
        return task_id

    return make
