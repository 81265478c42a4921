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


def test_a_task_declared_durable_is_enqueued_durable_by_name_or_by_message(
    app: Conveyor,
) -> None:
    @app.task(name="pay", durable=True)
    def pay(amount: int) -> None: ...

    assert pay.message(5).options.durable is True
    assert app.message("pay", 5).options.durable is True  # by name, as app.enqueue does
    assert pay.message(5, durable=False).options.durable is False  # an enqueue may opt out


def test_flow_keys_and_limits_may_be_computed_from_the_arguments(app: Conveyor) -> None:
    premium = {"acme"}

    @app.task(
        concurrency=lambda tenant, *_: 10 if tenant in premium else 1,
        concurrency_key=lambda tenant, *_: tenant,
        rate_limit="5/s",
        rate_limit_key=lambda tenant, *_: f"api:{tenant}",
        unique="replace",
        unique_key=lambda tenant, report: f"{tenant}/{report}",
        group_key=lambda tenant, *_: tenant,
    )
    def export(tenant: str, report: str) -> None: ...

    options = export.message("acme", "q3").options
    assert (options.concurrency, options.concurrency_key) == (10, "acme")
    assert (options.rate_limit, options.rate_limit_key) == ("5/s", "api:acme")
    assert (options.unique, options.unique_key, options.group_key) == ("replace", "acme/q3", "acme")
    assert export.message("tiny", "q3").options.concurrency == 1
    # an enqueue's own value wins over the computed one, and the computed ones are not
    # called for it
    assert export.message("acme", "q3", concurrency_key="shared").options.concurrency_key == (
        "shared"
    )


def test_a_flow_option_that_needs_another_is_refused_at_once(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit_key is set but rate_limit"):

        @app.task(rate_limit_key="stripe")
        def charge() -> None: ...

    @app.task(concurrency_key=lambda *_: "k")
    def sync() -> None: ...

    with pytest.raises(ConfigurationError, match="concurrency_key is set but concurrency"):
        sync.message()
