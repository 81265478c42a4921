"""Fixtures of the CLI tests: `conveyor` run in-process by click's CliRunner, against the
test Redis or against a port where no Redis listens."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

import pytest
from click.testing import CliRunner, Result

from conveyor.cli import cli
from conveyor.tools.embedded import RedisServer, free_port


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
