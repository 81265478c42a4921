"""A pool of daemon threads for sync handlers.

Daemon threads matter: a handler past its timeout cannot be stopped, only abandoned, and
the standard ThreadPoolExecutor would keep the process alive at exit until it returns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_Job = tuple[Future[Any], Callable[[], Any]]


class DaemonThreadPool:
    """Runs callables on up to `size` daemon threads, started on demand."""

    def __init__(self, size: int, name: str = "conveyor-task") -> None:
        self.size = size
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Schedule `fn`; its Future completes with its result or exception."""
        future: Future[Any] = Future()
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # an idle thread will take it
            elif len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            # else: it waits in the queue for the first thread to free up
        self._jobs.put((future, fn))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn = job
            if not future.set_running_or_notify_cancel():
                self._went_idle()
                continue
            # idle before the future's waiters wake: a caller that submits again as soon as
            # its result arrives finds this thread free, rather than starting another
            try:
                result = fn()
            except BaseException as exc:
                self._went_idle()
                future.set_exception(exc)
            else:
                self._went_idle()
                future.set_result(result)

    def _went_idle(self) -> None:
        with self._lock:
            self._idle += 1

    def shutdown(self) -> None:
        """Ask idle threads to exit; busy (abandoned) ones end with the process."""
        for _ in self._threads:
            self._jobs.put(None)
