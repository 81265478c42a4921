"""steps.py: the drivers that run logic written once as a generator, sync and async."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from conveyor.broker.steps import Steps, drive, drive_async


def asking(count: int) -> Steps[int, list[Any]]:
    """Asks for 1..count in turn and returns the answers it got, in order."""
    answers = []
    for request in range(1, count + 1):
        answers.append((yield request))
    return answers


def sync_driver(answer: Callable[[int], Any]) -> Callable[[Steps[int, Any]], Awaitable[Any]]:
    async def run(steps: Steps[int, Any]) -> Any:
        return drive(steps, answer)

    return run


def async_driver(answer: Callable[[int], Any]) -> Callable[[Steps[int, Any]], Awaitable[Any]]:
    async def answered(request: int) -> Any:
        return answer(request)

    async def run(steps: Steps[int, Any]) -> Any:
        return await drive_async(steps, answered)

    return run


DRIVERS = pytest.mark.parametrize("driver", [sync_driver, async_driver], ids=["drive", "async"])
Driver = Callable[[Callable[[int], Any]], Callable[[Steps[int, Any]], Awaitable[Any]]]


@DRIVERS
async def test_each_answer_is_sent_back_and_the_return_value_returned(driver: Driver) -> None:
    asked: list[int] = []

    def answer(request: int) -> int:
        asked.append(request)
        return request * 2

    assert await driver(answer)(asking(3)) == [2, 4, 6]
    assert asked == [1, 2, 3]  # one answer per request, in order


@DRIVERS
async def test_steps_that_ask_nothing_return_at_once(driver: Driver) -> None:
    def never(request: int) -> None:
        raise AssertionError(f"asked {request}")

    assert await driver(never)(asking(0)) == []


@DRIVERS
async def test_an_error_of_an_answer_propagates_to_the_caller(driver: Driver) -> None:
    def answer(request: int) -> int:
        if request == 2:
            raise KeyError(f"no answer to {request}")
        return request

    with pytest.raises(KeyError, match="no answer to 2"):
        await driver(answer)(asking(3))
