"""Models what an OS crash costs an `appendfsync everysec` Redis.

kill -9 of redis-server loses nothing in either fsync mode: every acknowledged write
was already handed to the kernel with write(2), and the page cache survives the
process. What everysec gives up is the fsync: an OS crash or power loss drops the page
cache, up to a second of acknowledged writes (Redis fsyncs once a second). We cannot
crash this machine's kernel, so after killing Redis the runner cuts the AOF back to
the size it had `lag` seconds earlier: the same file the disk would hold after a power
cut right before the next fsync. With `always` there is no such tail (each reply waits
for its fsync), so the same cut is a no-op and is not made.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path

#: How often the size of the AOF is sampled.
SAMPLE_EVERY = 0.02


def active_aof(data_dir: Path) -> Path | None:
    """The file Redis appends to: the newest incr file (Redis 7) or appendonly.aof."""
    incr = sorted(
        (data_dir / "appendonlydir").glob("*.incr.aof"),
        key=lambda p: int(p.name.split(".")[-3]),
    )
    if incr:
        return incr[-1]
    single = data_dir / "appendonly.aof"
    return single if single.exists() else None


class AofTail(threading.Thread):
    """Samples the active AOF's size over time; `cut(lag)` drops what was written in
    the last `lag` seconds (call it only while Redis is stopped)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(name="chaos-aof", daemon=True)
        self.data_dir = data_dir
        self.halt = threading.Event()
        self._lock = threading.Lock()
        self._times: list[float] = []
        self._sizes: list[tuple[Path, int]] = []
        self.bytes_cut = 0

    def run(self) -> None:
        while not self.halt.wait(SAMPLE_EVERY):
            path = active_aof(self.data_dir)
            if path is None:
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            with self._lock:
                self._times.append(time.monotonic())
                self._sizes.append((path, size))

    def cut(self, lag: float) -> int:
        """Truncate the active AOF to its size `lag` seconds ago; returns bytes dropped."""
        with self._lock:
            i = bisect.bisect_right(self._times, time.monotonic() - lag) - 1
            if i < 0:
                return 0
            path, size = self._sizes[i]
            # forget samples of the dropped tail: the next cut must not resurrect them
            del self._times[i + 1 :], self._sizes[i + 1 :]
        current = path.stat().st_size if path.exists() else 0
        if current <= size:
            return 0
        os.truncate(path, size)
        self.bytes_cut += current - size
        return current - size

    def stop(self) -> None:
        """Stop sampling."""
        self.halt.set()
        if self.is_alive():
            self.join(5)
