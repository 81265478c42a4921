"""options.py: TaskOptions, the one type a task's options travel in from the decorator to
the record: what it refuses, what it takes out of a call's keyword arguments, and what an
enqueue inherits from its task's definition."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.errors import ConfigurationError, InvalidNameError
from conveyor.flow import Rate
from conveyor.options import NO_OPTIONS, TaskOptions

# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 101}, "priority must be an integer in -100..100, got 101"),
        ({"priority": -101}, "priority must be an integer in -100..100, got -101"),
        ({"priority": 1.5}, "priority must be an integer in -100..100, got 1.5"),
        ({"priority": "high"}, "priority must be an integer in -100..100, got 'high'"),
        ({"delay": -1}, "delay must be >= 0, got -1"),
        ({"delay": -0.001}, "delay must be >= 0, got -0.001"),
        ({"idempotency_key": ""}, "idempotency_key must be a string of 1-200 characters"),
        ({"idempotency_key": "k" * 201}, "idempotency_key must be a string of 1-200 characters"),
        ({"idempotency_key": 42}, "idempotency_key must be a string of 1-200 characters"),
    ],
    ids=repr,
)
def test_an_invalid_option_is_a_configuration_error_that_says_why(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        TaskOptions(**options)
    assert str(raised.value) == message


@pytest.mark.parametrize("queue", ["a:b", "{emails}", "", "x" * 65])
def test_an_invalid_queue_is_an_invalid_name(queue: str) -> None:
    with pytest.raises(InvalidNameError, match=f"invalid queue name {queue!r}"):
        TaskOptions(queue=queue)
    assert issubclass(InvalidNameError, ConfigurationError)  # one `except` catches both


def test_the_limits_themselves_are_accepted() -> None:
    at_limits = TaskOptions(
        queue="q" * 64, priority=-100, delay=0, idempotency_key="k" * 200, eta=datetime.now(UTC)
    )
    assert (at_limits.priority, TaskOptions(priority=100).priority) == (-100, 100)
    assert TaskOptions() == NO_OPTIONS


# Each of these used to pass, then break later: enqueue(max_retries=1.5) or
# enqueue(timeout="abc") stored a record that raised CorruptRecordError whenever it was
# read; timeout=-1 timed every attempt out at once; delay=nan/inf/"5", eta="tomorrow" and
# priority=True failed at enqueue with ValueError, OverflowError, TypeError or DataError.
@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": "3"},
        {"timeout": -1},
        {"timeout": "abc"},
        {"delay": math.nan},
        {"delay": math.inf},
        {"delay": "5"},
        {"eta": "tomorrow"},
        {"priority": True},
    ],
    ids=repr,
)
def test_every_option_is_checked_before_anything_is_stored(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        TaskOptions(**options)


# -- taking options out of a call ----------------------------------------------------------


def test_pop_from_takes_the_options_and_leaves_the_handlers_kwargs() -> None:
    kwargs: dict[str, Any] = {"to": "a@b.c", "queue": "emails", "priority": 2, "subject": "hi"}
    options = TaskOptions.pop_from(kwargs)
    assert options == TaskOptions(queue="emails", priority=2)
    assert kwargs == {"to": "a@b.c", "subject": "hi"}  # what remains is the handler's own


def test_pop_from_with_no_option_changes_nothing() -> None:
    kwargs: dict[str, Any] = {"to": "a@b.c"}
    assert TaskOptions.pop_from(kwargs) is NO_OPTIONS
    assert TaskOptions.pop_from({}) is NO_OPTIONS
    assert kwargs == {"to": "a@b.c"}


def test_pop_from_validates_what_it_takes() -> None:
    kwargs: dict[str, Any] = {"delay": -5, "to": "a@b.c"}
    with pytest.raises(ConfigurationError, match="delay must be >= 0"):
        TaskOptions.pop_from(kwargs)


# -- what an enqueue inherits from its task's definition ----------------------------------

DEFINITION = TaskOptions(queue="emails", priority=5, max_retries=3, timeout=2.0)


def test_only_queue_priority_durable_and_flow_control_are_inherited() -> None:
    assert ("queue", "priority", "durable", *TaskOptions.FLOW) == TaskOptions.DEFINITION_DEFAULTS
    assert DEFINITION.inheritable() == TaskOptions(queue="emails", priority=5)
    limited = TaskOptions(queue="q", max_retries=3, concurrency=2, rate_limit="1/s")
    assert limited.inheritable() == TaskOptions(queue="q", concurrency=2, rate_limit="1/s")
    assert TaskOptions(durable=True, delay=1).inheritable() == TaskOptions(durable=True)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"rate_limit": "10"}, "rate_limit must look like"),
        ({"rate_limit": "0/s"}, "at least 1 task"),
        ({"rate_limit": "5/fortnight"}, "rate_limit must look like"),
        ({"unique": "maybe"}, "unique must be a bool or one of"),
        ({"unique": "throttle"}, "needs unique_window"),
        ({"unique": True, "unique_window": 0}, "unique_window must be seconds > 0"),
        ({"concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"concurrency": True}, "concurrency must be an integer >= 1"),
        ({"rate_limit": "1/s", "rate_limit_burst": 1.5}, "rate_limit_burst must be"),
        ({"group_key": ""}, "group_key must be a string"),
        ({"unique": True, "unique_key": "k" * 201}, "unique_key must be a string"),
        ({"unique_key": "k"}, "unique_key is set but unique is not"),
        ({"rate_limit_burst": 2}, "rate_limit_burst is set but rate_limit is not"),
    ],
)
def test_bad_flow_options_are_refused_with_what_is_wrong(given: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        TaskOptions(**given)


@pytest.mark.parametrize(
    ("text", "count", "period_ms"),
    [("100/s", 100, 1000), ("10/m", 10, 60_000), ("5 / hour", 5, 3_600_000),
     ("1000/d", 1000, 86_400_000), ("10/5s", 10, 5000), ("3/2min", 3, 120_000)],
)  # fmt: skip
def test_rates_parse_to_a_count_per_period(text: str, count: int, period_ms: int) -> None:
    assert Rate.parse(text) == Rate(count, period_ms)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, TaskOptions(queue="emails", priority=5)),
        ({"max_retries": 1}, TaskOptions(queue="emails", priority=5, max_retries=1)),
        ({"queue": None, "priority": None}, TaskOptions(queue="emails", priority=5)),
        ({"queue": "sms", "priority": -1}, TaskOptions(queue="sms", priority=-1)),
        ({"priority": 0, "delay": 1.0}, TaskOptions(queue="emails", priority=0, delay=1.0)),
    ],
    ids=["nothing", "max_retries", "explicit-none", "both-given", "priority-zero"],
)
def test_unset_queue_and_priority_are_filled_from_the_definition(
    given: dict[str, Any], expected: TaskOptions
) -> None:
    assert TaskOptions.pop_from(dict(given), DEFINITION.inheritable()) == expected


def test_a_definitions_message_inherits_queue_and_priority_only(app: Conveyor) -> None:
    @app.task(name="send", queue="emails", priority=5, max_retries=3, timeout=2.0)
    def send(to: str) -> None: ...

    # max_retries and timeout stay on the definition: the worker resolves them per attempt
    assert send.defaults == DEFINITION
    assert send.message("a@b.c").options == TaskOptions(queue="emails", priority=5)
    message = send.message("a@b.c", timeout=9.0, subject="hi")
    assert message.options == TaskOptions(queue="emails", priority=5, timeout=9.0)
    assert (message.args, message.kwargs) == (("a@b.c",), {"subject": "hi"})
    assert app.message("send", "a@b.c").options == send.message("a@b.c").options
