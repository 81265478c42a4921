"""Helpers shared by the worker's periodic components."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from conveyor.errors import BrokerFullError, BrokerUnavailableError
from conveyor.worker.outage import MAX_OUTAGE_BACKOFF, Outage

T = TypeVar("T")
#: Longest pause between attempts of a periodic step while Redis is full.
FULL_PACE = 1.0


async def sleep_or_stop(
    stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None
) -> None:
    """Sleep `seconds`, or less if `stop` (or `wake`, which is then cleared) is set meanwhile."""
    if seconds <= 0 or stop.is_set():
        return
    if wake is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        return
    waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        wake.clear()


def outage_backoff(failures: int, cap: float = MAX_OUTAGE_BACKOFF) -> float:
    """Jittered wait before trying Redis again after `failures` failed attempts in a row."""
    return random.uniform(0.5, 1.0) * min(cap, 0.1 * 2.0**failures)


async def periodically(
    name: str,
    step: Callable[[], Awaitable[float]],
    stop: asyncio.Event,
    log: logging.Logger,
    outage: Outage | None = None,
    wake: asyncio.Event | None = None,
) -> None:
    """Run `step` until `stop`; it returns the seconds to wait before the next run, which
    `wake` (when given) cuts short.

    A failing step is logged and retried with backoff, so one component's trouble never
    takes down the worker (the supervisor's job, as in asynq and saq); an unreachable
    Redis is logged through `outage`, shared by the worker's components. A step refused
    because Redis is full keeps its pace instead: Redis answers, and the step must be
    there the moment memory comes back (logged once, when it starts and when it ends).
    """
    outage = outage or Outage(connected=True)
    failures, pace, full = 0, FULL_PACE, False
    while not stop.is_set():
        started = time.monotonic()
        try:
            wait = pace = await step()
            outage.reached(started)
            if full:
                log.info("%s: Redis accepts writes again", name)
            failures, full = 0, False
        except BrokerFullError as exc:
            wait = min(pace, FULL_PACE)
            if not full:
                log.warning("%s: %s; trying again every %.1fs", name, exc, wait)
            full = True
        except BrokerUnavailableError as exc:
            failures += 1
            wait = outage_backoff(failures)
            outage.failed(name, exc)
        except Exception:
            failures += 1
            wait = outage_backoff(failures)
            log.exception("%s failed; retrying in %.1fs", name, wait)
        await sleep_or_stop(stop, wait, wake)


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
