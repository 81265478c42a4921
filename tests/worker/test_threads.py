"""DaemonThreadPool: the threads sync handlers run on."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from typing import Any

import pytest

from conveyor.worker.threads import DaemonThreadPool, LoopJob


@pytest.fixture
def pool() -> Iterator[DaemonThreadPool]:
    """A pool of 3 threads with a name of its own, shut down after the test."""
    threads = DaemonThreadPool(3, name=f"pool-{uuid.uuid4().hex[:8]}")
    yield threads
    threads.shutdown()


def _threads_of(pool: DaemonThreadPool) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(pool.name + "-")]


def test_runs_jobs_and_returns_their_results(pool: DaemonThreadPool) -> None:
    futures = [pool.submit(lambda n=n: n * n) for n in range(20)]  # type: ignore[misc]
    assert [f.result(timeout=5) for f in futures] == [n * n for n in range(20)]


def test_propagates_exceptions_and_keeps_working(pool: DaemonThreadPool) -> None:
    def fails() -> None:
        raise KeyError("missing")

    failed = pool.submit(fails)
    with pytest.raises(KeyError, match="missing"):
        failed.result(timeout=5)
    assert isinstance(failed.exception(), KeyError)

    def exits() -> None:
        raise SystemExit(3)  # a handler's SystemExit is its own failure, not the thread's

    assert isinstance(pool.submit(exits).exception(timeout=5), SystemExit)
    assert pool.submit(lambda: "still alive").result(timeout=5) == "still alive"


def test_never_runs_more_jobs_at_once_than_its_size(pool: DaemonThreadPool) -> None:
    lock = threading.Lock()
    running, peak, seen = [0], [0], set()
    together = threading.Barrier(3, timeout=10)  # the first three meet: they run at once

    def job(first: bool) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            seen.add(threading.get_ident())
        if first:
            together.wait()
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    futures = [pool.submit(functools.partial(job, n < 3)) for n in range(30)]
    done, not_done = wait(futures, timeout=10)
    assert not not_done and all(f.exception() is None for f in done)
    assert peak[0] == 3  # reached its size (the jobs did run in parallel) ...
    assert len(seen) <= 3  # ... on no more threads than that
    assert len(_threads_of(pool)) <= 3


def _raise_ident() -> None:
    raise LookupError(threading.get_ident())


def test_threads_are_reused_and_started_on_demand(pool: DaemonThreadPool) -> None:
    assert _threads_of(pool) == []  # nothing started before the first job
    idents = set()
    for n in range(20):  # one job at a time: one thread is enough
        # no pause between jobs: a result (or an error) reaches its caller only once the
        # thread counts as idle, so the next submit hands it the job instead of starting
        # another thread
        if n % 2:
            idents.add(pool.submit(threading.get_ident).result(timeout=5))
        else:
            error = pool.submit(_raise_ident).exception(timeout=5)
            assert isinstance(error, LookupError)
            idents.add(error.args[0])
    assert len(idents) == 1 and len(_threads_of(pool)) == 1


def test_a_caller_woken_by_a_result_finds_its_thread_idle(pool: DaemonThreadPool) -> None:
    # the moment a result is released is the moment its done-callbacks run: a submit made
    # there must find the thread idle already (it used to count itself idle only after
    # releasing its future, so a caller quick enough started a second thread)
    release = threading.Event()
    first = pool.submit(lambda: release.wait(5))
    follow_up: list[Future[Any]] = []
    submitted = threading.Event()

    def submit_again(_: Future[Any]) -> None:
        follow_up.append(pool.submit(threading.get_ident))
        submitted.set()

    first.add_done_callback(submit_again)
    release.set()
    assert first.result(timeout=5) is True
    assert submitted.wait(5)  # the callback runs after the waiters are woken
    [second] = follow_up
    assert second.result(timeout=5) in {t.ident for t in _threads_of(pool)}
    assert len(_threads_of(pool)) == 1


def test_threads_are_daemons(pool: DaemonThreadPool) -> None:
    flags = [pool.submit(lambda: threading.current_thread().daemon) for _ in range(6)]
    assert all(f.result(timeout=5) for f in flags)
    assert _threads_of(pool) and all(t.daemon for t in _threads_of(pool))


def test_shutdown_ends_idle_threads_and_abandons_busy_ones() -> None:
    pool = DaemonThreadPool(2, name=f"pool-{uuid.uuid4().hex[:8]}")
    release = threading.Event()
    busy = pool.submit(lambda: release.wait(10))
    pool.submit(lambda: None).result(timeout=5)
    pool.shutdown()
    try:
        _wait(lambda: len(_threads_of(pool)) == 1)  # the idle one exited
        assert not busy.done()  # the busy one is left to finish (or to die with the process)
    finally:
        release.set()
    assert busy.result(timeout=5) is True
    _wait(lambda: _threads_of(pool) == [])


def _wait(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# run(): jobs for an event loop, their outcomes handed back in batches


async def test_run_settles_the_loops_futures_with_results_and_errors(
    pool: DaemonThreadPool,
) -> None:
    def fails() -> None:
        raise KeyError("missing")

    jobs = [pool.run(lambda n=n: n * n) for n in range(20)]  # type: ignore[misc]
    failing = pool.run(fails)
    assert await asyncio.gather(*(j.result for j in jobs)) == [n * n for n in range(20)]
    with pytest.raises(KeyError, match="missing"):
        await failing.result
    assert len(_threads_of(pool)) <= 3


async def test_a_burst_of_results_wakes_the_loop_once_not_per_result(
    pool: DaemonThreadPool,
) -> None:
    loop = asyncio.get_running_loop()
    wakeups = 0
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal wakeups
        wakeups += 1
        return call_soon_threadsafe(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
    try:
        # the loop does not run while the threads finish: every result lands in one batch
        jobs = [pool.run(lambda n=n: n) for n in range(300)]  # type: ignore[misc]
        deadline = time.monotonic() + 10
        while not all(j.finished for j in jobs):
            assert time.monotonic() < deadline, "jobs did not finish"
            time.sleep(0.001)  # blocks the loop on purpose
        time.sleep(0.1)  # each thread hands its result over just after `finished`
        assert sorted(await asyncio.gather(*(j.result for j in jobs))) == list(range(300))
    finally:
        del loop.call_soon_threadsafe
    assert wakeups == 1


async def test_a_job_cancelled_before_a_thread_takes_it_never_runs() -> None:
    pool = DaemonThreadPool(1, name=f"pool-{uuid.uuid4().hex[:8]}")
    release = threading.Event()
    ran: list[str] = []
    try:
        busy = pool.run(lambda: release.wait(10))
        skipped = pool.run(lambda: ran.append("skipped"))
        skipped.result.cancel()
        after = pool.run(lambda: ran.append("after"))
        release.set()
        assert await busy.result is True
        await after.result
        assert ran == ["after"]
    finally:
        pool.shutdown()


async def test_a_timed_job_starts_when_a_thread_takes_it_not_when_queued() -> None:
    pool = DaemonThreadPool(1, name=f"pool-{uuid.uuid4().hex[:8]}")
    release = threading.Event()
    try:
        first = pool.run(lambda: release.wait(10), timed=True)
        second = pool.run(lambda: "second", timed=True)
        assert first.started is not None and second.started is not None
        await asyncio.wait_for(first.started, 5)
        await asyncio.sleep(0.1)
        assert not second.started.done()  # still waiting for the only thread
        release.set()
        await asyncio.wait_for(second.started, 5)
        assert await second.result == "second"
        assert pool.run(lambda: None).started is None  # untimed: nothing to signal
    finally:
        pool.shutdown()


async def test_an_abandoned_job_gives_its_place_to_a_fresh_thread_which_retires_later() -> None:
    pool = DaemonThreadPool(1, name=f"pool-{uuid.uuid4().hex[:8]}")
    release = threading.Event()
    try:
        stuck = pool.run(lambda: release.wait(10), timed=True)
        assert stuck.started is not None
        await asyncio.wait_for(stuck.started, 5)
        stuck.result.cancel()  # what a timeout does
        pool.abandon(stuck)
        # the pool of one runs the next job at once, on another thread
        assert await asyncio.wait_for(pool.run(threading.get_ident).result, 5) != 0
        assert len(_threads_of(pool)) == 2
        release.set()  # the stuck call returns: its outcome is dropped, its thread ends
        _wait(lambda: len(_threads_of(pool)) == 1)
        assert stuck.finished and stuck.result.cancelled()
        assert await asyncio.wait_for(pool.run(lambda: "on").result, 5) == "on"
        assert len(_threads_of(pool)) == 1
    finally:
        release.set()
        pool.shutdown()


def test_a_result_for_a_closed_loop_is_dropped_quietly() -> None:
    pool = DaemonThreadPool(1, name=f"pool-{uuid.uuid4().hex[:8]}")
    release, returned = threading.Event(), threading.Event()
    jobs: list[LoopJob] = []

    def late() -> None:
        release.wait(10)
        returned.set()

    async def start() -> None:
        jobs.append(pool.run(late))

    try:
        asyncio.run(start())  # the loop closes with the job still running
        release.set()
        assert returned.wait(5)
        _wait(lambda: jobs[0].finished)
        # and the thread lives on for the next loop's jobs
        assert asyncio.run(_result_of(pool, lambda: 7)) == 7
    finally:
        pool.shutdown()


async def _result_of(pool: DaemonThreadPool, fn: Callable[[], Any]) -> Any:
    return await pool.run(fn).result
