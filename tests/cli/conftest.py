"""Fixtures of the CLI tests: `conveyor` run in-process by click's CliRunner, against the
test Redis or against a port where no Redis listens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import pytest
from click.testing import CliRunner, Result

from conveyor import Conveyor, TaskState
from conveyor.cli import cli
from conveyor.tools.embedded import RedisServer, free_port
from tests.support.worker import running_worker, wait_all, wait_until


class Invoke(Protocol):
    """Runs `conveyor --redis-url <a server> --prefix <test prefix> *args`."""

    def __call__(self, *args: str, input: str | None = None) -> Result: ...


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The root command points the root logger at the runner's stderr; undo it after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _invoker(url: str, prefix: str) -> Invoke:
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        options = ["--redis-url", url, "--prefix", prefix]
        return runner.invoke(cli, [*options, *args], input=input, prog_name="conveyor")

    return run


@pytest.fixture
def invoke(redis_server: RedisServer, prefix: str) -> Invoke:
    """The command line on the test server, under this test's prefix."""
    return _invoker(redis_server.url, prefix)


@pytest.fixture
def unreachable(prefix: str) -> Invoke:
    """The command line pointed at a port where no Redis listens."""
    return _invoker(f"redis://127.0.0.1:{free_port()}/0", prefix)


#: `async with live_worker(worker_id):` a worker the commands can see; see the fixture.
LiveWorker = Callable[[str], AbstractAsyncContextManager[None]]


@pytest.fixture
def live_worker(aapp: Conveyor) -> LiveWorker:
    """A worker of queues default and emails, registered by heartbeat for the block."""

    @contextlib.asynccontextmanager
    async def run(worker_id: str) -> AsyncIterator[None]:
        inspector = aapp.async_inspector()

        async def registered() -> bool:
            return worker_id in [w["id"] for w in await inspector.workers()]

        async with running_worker(aapp, "default,emails", worker_id=worker_id):
            await wait_until(registered, 10, "the worker to register")
            yield

    return run


@pytest.fixture
def retried_dead_letter(app: Conveyor) -> str:
    """The id of a dead letter a real worker made: task `flaky`, whose decorator set
    max_retries=1 (not stored on the record), failed twice; its history holds the first."""
    return flaky_dead_letter(app)


def flaky_dead_letter(app: Conveyor, **options: Any) -> str:
    """Run task `flaky` (its decorator: max_retries=1; it always raises), enqueued with
    `options`, on a real worker until it is dead-lettered; its id."""

    @app.task(name="flaky", max_retries=1)
    def flaky() -> None:
        raise ValueError("always")

    handle = flaky.enqueue(**options)

    async def work() -> None:
        try:
            async with running_worker(app, "default"):
                await wait_all([handle], TaskState.DEAD, 15, "the task to be dead-lettered")
        finally:
            await app.aclose()

    asyncio.run(work())
    return handle.id
