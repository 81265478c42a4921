"""SIGTERM/SIGINT: the first drains gracefully, the second stops fast (still losing nothing)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

log = logging.getLogger("conveyor.worker")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install(stop: Callable[[bool], None]) -> Callable[[], None]:
    """Route the shutdown signals of the running loop to `stop(fast)`; returns an uninstaller."""
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def handle(signum: int) -> None:
        received.append(signum)
        fast = len(received) > 1
        name = signal.Signals(signum).name
        log.warning("%s received: %s", name, "stopping now" if fast else "draining")
        stop(fast)

    for sig in SIGNALS:
        loop.add_signal_handler(sig, handle, sig)

    def uninstall() -> None:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)

    return uninstall
