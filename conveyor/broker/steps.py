"""Logic written once for a sync and an async caller: a generator yields what to do next
and gets the result sent back; a driver supplies the I/O (sans-IO, as in h11).

The transport's script reload and the Inspector's multi-round-trip reads (dead-letter
scans, purges, fsck) are such generators, so each is written once and run by both faces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")
Q = TypeVar("Q")

#: Yields requests of type Q, receives each one's answer, returns a T.
Steps = Generator[Q, Any, T]


def drive(steps: Steps[Q, T], answer: Callable[[Q], Any]) -> T:
    """Run `steps` to the end, answering each request with `answer`."""
    try:
        request = next(steps)
        while True:
            request = steps.send(answer(request))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(steps: Steps[Q, T], answer: Callable[[Q], Awaitable[Any]]) -> T:
    """Like `drive`, awaiting each answer."""
    try:
        request = next(steps)
        while True:
            request = steps.send(await answer(request))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
