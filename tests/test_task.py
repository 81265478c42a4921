"""task.py: what a task definition accepts, and what it refuses at registration."""

from __future__ import annotations

import pytest

from conveyor import Conveyor
from conveyor.errors import ConfigurationError


def test_an_async_handler_cannot_run_in_a_thread(app: Conveyor) -> None:
    async def handler() -> None:
        return None

    with pytest.raises(ConfigurationError, match="an async handler cannot run in a thread"):
        app.task(executor="thread")(handler)
    assert app.tasks == {}  # nothing was registered


def test_a_task_name_is_registered_once(app: Conveyor) -> None:
    def handler() -> None:
        return None

    app.task(name="job")(handler)
    with pytest.raises(ConfigurationError, match="a task named 'job' is already registered"):
        app.task(name="job")(handler)
    assert list(app.tasks) == ["job"]


def test_the_decorator_takes_defaults_that_messages_inherit(app: Conveyor) -> None:
    @app.task(queue="emails", priority=5, max_retries=2, timeout=3.0)
    def send(to: str) -> None:
        return None

    assert (send.queue, send.defaults.max_retries, send.defaults.timeout) == ("emails", 2, 3.0)
    message = send.message("a@b.c", priority=-1)
    assert (message.options.queue, message.options.priority) == ("emails", -1)
    assert (message.args, message.kwargs) == (("a@b.c",), {})
    # max_retries and timeout are resolved by the worker when the task runs, not stored
    assert (message.options.max_retries, message.options.timeout) == (None, None)
