"""Holding the GIL for real, for the tests of what a GIL-bound handler does to a worker.

A loop in pure Python hands the GIL to other threads every `sys.getswitchinterval()`
(5 ms); one long C call that never releases it (`sum` over a `range`) stops every other
thread of the process, heartbeats included.
"""

from __future__ import annotations

import time

#: Numbers summed, three times, to calibrate the speed of `sum` before holding the GIL.
SAMPLE = 1_000_000


def hold_gil(seconds: float) -> None:
    """Hold the GIL for at least about `seconds` in one C call: no other thread runs
    meanwhile. The fastest of three samples calibrates it, so a sample slowed down by
    a busy machine cannot shorten the hold."""
    per_item = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sum(range(SAMPLE))
        per_item = min(per_item, (time.perf_counter() - started) / SAMPLE)
    sum(range(int(seconds / per_item)))
