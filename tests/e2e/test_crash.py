"""A worker killed with SIGKILL loses nothing; a task that keeps killing its worker ends dead."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.settings import Settings
from tests.support.handlers import read_ledger
from tests.support.processes import WorkerProcess
from tests.support.rendezvous import gate_key
from tests.support.worker import LOAD_SLACK, wait_until_sync

pytestmark = pytest.mark.slow


@pytest.fixture
def fast_lease(settings: Settings) -> Settings:
    return settings.replace(lease_timeout=1.5)


def test_sigkill_mid_task_loses_nothing(
    fast_lease: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    app = Conveyor(settings=fast_lease)
    # each run ends only once the gate is open, after the kill: the first worker ends none
    handles = [app.enqueue("hold", f"job{i}") for i in range(4)]
    rendezvous = "tests.support.rendezvous:app"
    first = WorkerProcess(fast_lease, tmp_path, "--concurrency", "4", app=rendezvous)
    second = None
    try:
        wait_until_sync(
            lambda: sum(e["event"] == "start" for e in read_ledger(r, fast_lease.prefix)) == 4,
            20,
            "the first worker to start every task",
        )
        first.signal(signal.SIGKILL)
        first.wait(10)
        killed_at = time.monotonic()
        r.set(gate_key(fast_lease.prefix), 1)
        second = WorkerProcess(fast_lease, tmp_path, app=rendezvous)
        wait_until_sync(
            lambda: all(h.status() == TaskState.SUCCEEDED for h in handles), 30, "recovery"
        )
        recovered_in = time.monotonic() - killed_at
    finally:
        first.stop()
        if second is not None:
            second.signal(signal.SIGTERM)
            assert second.wait(15) == 0, second.log()
    ledger = read_ledger(r, fast_lease.prefix)
    for handle in handles:
        runs = [e for e in ledger if e["id"] == handle.id]
        # started by the killed worker (token 1, never ended), then completed by the second
        assert [(e["event"], e["pid"], e["token"]) for e in runs] == [
            ("start", first.pid, 1),
            ("start", second.pid, 2),
            ("end", second.pid, 2),
        ]
        record = handle.record()
        assert record is not None and record.crashes == 1 and record.failures == 0
    # the lease runs out (1.5 s) and a sweep finds it (every lease/2, jittered by up to
    # 20%); the worker's start, the run and a loaded machine get LOAD_SLACK
    bound = fast_lease.lease_timeout * (1 + 0.5 * 1.2) + LOAD_SLACK
    assert recovered_in < bound, f"recovered in {recovered_in:.1f}s"


def test_poison_pill_dies_alone_after_max_crashes(
    fast_lease: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    app = Conveyor(settings=fast_lease)
    poison = app.enqueue("crash", "poison")
    innocents = [app.enqueue("record", f"ok{i}", seconds=0.3) for i in range(6)]
    workers: list[WorkerProcess] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [poison.status(), *(h.status() for h in innocents)]
            if all(state is not None and state.is_terminal for state in done):
                break
            if not workers or not workers[-1].alive():  # a supervisor restarting the worker
                workers.append(WorkerProcess(fast_lease, tmp_path, "--concurrency", "8"))
            time.sleep(0.05)
    finally:
        for worker in workers:
            worker.stop()
    record = poison.record()
    assert record is not None
    assert (record.state, record.reason) == (TaskState.DEAD, "worker lost")
    assert record.error is not None and "last worker" in record.error["message"]
    starts = Counter(e["id"] for e in read_ledger(r, fast_lease.prefix) if e["event"] == "start")
    assert starts[poison.id] == fast_lease.max_crashes
    for handle in innocents:
        assert handle.status() == TaskState.SUCCEEDED
        innocent = handle.record()
        assert innocent is not None and innocent.crashes <= 1  # suspects run alone
