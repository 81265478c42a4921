"""A pool of daemon threads for sync handlers, and the batched way their results get back.

Daemon threads matter: a handler past its timeout cannot be stopped, only abandoned, and
the standard ThreadPoolExecutor would keep the process alive at exit until it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

#: where a job's outcome goes: a thread-safe Future, or a loop's job and its inbox
_Target = Future[Any] | tuple["LoopJob", "LoopInbox"]
_Job = tuple[_Target, Callable[[], Any]]


class LoopJob:
    """A job run for an event loop: Futures of that loop for its outcome and, if asked
    for, for the moment a thread starts it (a timeout counts from there, not from the
    time it waited for a thread)."""

    __slots__ = ("finished", "result", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, timed: bool) -> None:
        self.result: asyncio.Future[Any] = loop.create_future()
        self.started: asyncio.Future[None] | None = loop.create_future() if timed else None
        #: its call returned (set by its thread, under the pool's lock)
        self.finished = False


class LoopInbox:
    """Results handed from threads to one event loop, many per wake-up.

    A thread appends its result and wakes the loop only if no delivery is due already:
    under load one `call_soon_threadsafe` carries a whole burst, where a Future chained
    per task (`asyncio.wrap_future`) costs each task a wake-up, two Futures and their
    callbacks.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ready: deque[tuple[asyncio.Future[Any], Any, bool]] = deque()
        self._due = False

    def put(self, future: asyncio.Future[Any], value: Any, failed: bool) -> None:
        """From any thread: settle `future` on the loop (with `value` as its exception if
        `failed`)."""
        self._ready.append((future, value, failed))
        # appended before this check: a delivery due now resets the flag, then drains
        if not self._due:
            self._due = True
            # RuntimeError: the loop is closed (an abandoned handler returned late)
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        self._due = False  # before draining: a result appended meanwhile is drained too
        ready = self._ready
        while ready:
            future, value, failed = ready.popleft()
            if future.done():  # cancelled: timed out, or drained at shutdown
                continue
            if failed:
                future.set_exception(value)
            else:
                future.set_result(value)


class DaemonThreadPool:
    """Runs callables on up to `size` daemon threads, started on demand."""

    def __init__(self, size: int, name: str = "conveyor-task") -> None:
        self.size = size
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        #: jobs given up on (timed out) that still hold a thread: it counts out of `size`
        self._abandoned: set[LoopJob] = set()
        self._idle = 0
        self._lock = threading.Lock()
        self._inbox: LoopInbox | None = None
        self._started = 0

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Schedule `fn`; its Future completes with its result or exception."""
        future: Future[Any] = Future()
        self._put((future, fn))
        return future

    def run(self, fn: Callable[[], Any], *, timed: bool = False) -> LoopJob:
        """From the running loop: schedule `fn`; its outcome settles the job's `result`.

        Cancelling `result` before a thread takes the job skips it; after, the thread
        runs on and its outcome is dropped (see `abandon` for a thread that may never
        come back).
        """
        loop = asyncio.get_running_loop()
        inbox = self._inbox
        if inbox is None or inbox.loop is not loop:
            inbox = self._inbox = LoopInbox(loop)
        job = LoopJob(loop, timed=timed)
        self._put(((job, inbox), fn))
        return job

    def abandon(self, job: LoopJob) -> None:
        """Give up on a running job (past its timeout): another thread may start in place
        of the one it holds, so stuck handlers never use up the pool."""
        with self._lock:
            if not job.finished:
                self._abandoned.add(job)

    def _put(self, job: _Job) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # an idle thread will take it
            elif len(self._threads) - len(self._abandoned) < self.size:
                self._started += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{self._started - 1}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            # else: it waits in the queue for the first thread to free up
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            target, fn = job
            if isinstance(target, Future):
                self._settle(target, fn)
            elif not self._deliver(*target, fn):
                return

    def _settle(self, future: Future[Any], fn: Callable[[], Any]) -> None:
        if not future.set_running_or_notify_cancel():
            self._went_idle()
            return
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

    def _deliver(self, job: LoopJob, inbox: LoopInbox, fn: Callable[[], Any]) -> bool:
        """Run a loop's job; False if this thread retires (its job was given up on)."""
        # reading the loop's Future from here is safe: its state is one word, set under
        # the GIL; at worst a job cancelled this instant runs and its outcome is dropped
        if job.result.cancelled():
            self._went_idle()
            return True
        if job.started is not None:
            inbox.put(job.started, None, False)
        failed = False
        try:
            value = fn()
        except BaseException as exc:
            value, failed = exc, True
        with self._lock:  # one step with abandon(): a job is abandoned or finished first
            job.finished = True
            if job in self._abandoned:  # its place went to a fresh thread: retire
                self._abandoned.discard(job)
                self._threads.remove(threading.current_thread())
                return False
            self._idle += 1  # idle before its result wakes the loop (see _settle)
        inbox.put(job.result, value, failed)
        return True

    def _went_idle(self) -> None:
        with self._lock:
            self._idle += 1

    def shutdown(self) -> None:
        """Ask idle threads to exit; busy (abandoned) ones end with the process."""
        for _ in self._threads:
            self._jobs.put(None)
