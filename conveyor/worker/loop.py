"""Helpers shared by the worker's periodic components."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from conveyor.errors import BrokerUnavailableError

T = TypeVar("T")

#: Longest pause between attempts while Redis is unreachable.
MAX_OUTAGE_BACKOFF = 5.0


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    if seconds <= 0 or stop.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def outage_backoff(failures: int, cap: float = MAX_OUTAGE_BACKOFF) -> float:
    """Jittered wait before trying Redis again after `failures` failed attempts in a row."""
    return random.uniform(0.5, 1.0) * min(cap, 0.1 * 2.0**failures)


async def periodically(
    name: str,
    step: Callable[[], Awaitable[float]],
    stop: asyncio.Event,
    log: logging.Logger,
) -> None:
    """Run `step` until `stop`; it returns the seconds to wait before the next run.

    A failing step is logged and retried with backoff, so one component's trouble never
    takes down the worker (the supervisor's job, as in asynq and saq).
    """
    failures = 0
    while not stop.is_set():
        try:
            wait = await step()
            if failures:
                log.info("%s: Redis is reachable again", name)
            failures = 0
        except BrokerUnavailableError as exc:
            failures += 1
            wait = outage_backoff(failures)
            log.warning("%s: %s; retrying in %.1fs", name, exc, wait)
        except Exception:
            failures += 1
            wait = outage_backoff(failures)
            log.exception("%s failed; retrying in %.1fs", name, wait)
        await sleep_or_stop(stop, wait)


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop where it is installed (it is, on Linux and macOS), else asyncio.

    uvloop cuts the event loop's own cost per task; a worker spends much of its time there.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
