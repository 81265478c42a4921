"""Stop signals that arrive while `conveyor worker` starts, before anything handles them.

Until the app is loaded nothing has been claimed, so a stop signal ends the process at
once (SystemExit). That alone is not enough: Python runs a signal handler wherever the
main thread is, and where that is a weakref callback or a `__del__` (the import system
runs such callbacks while it loads the app) the SystemExit is printed and dropped. The
process then went on to start a worker that never heard the signal, and its supervisor
waited for it forever. So each signal is also recorded, and handed to whatever takes
over (the worker, or the pool) when it does.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

#: The stop signals, as the worker and the pool handle them.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class EarlyStop:
    """Records stop signals until `hand_over`, then passes each on as it comes."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._deliver: Callable[[int], None] | None = None

    def install(self) -> None:
        """Handle the stop signals from now until the worker or pool installs its own."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def hand_over(self, deliver: Callable[[int], None]) -> None:
        """Pass every signal received so far, and every later one, to `deliver`.

        The signals are blocked meanwhile, so none is passed on twice or lost in between.
        """
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self._deliver = deliver
            for signum in self.received:
                deliver(signum)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._deliver is not None:
            self._deliver(signum)
        else:
            raise SystemExit(0)  # may be dropped: then hand_over passes the signal on
