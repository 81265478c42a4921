"""Redis killed and restarted under a running worker: with appendfsync always, nothing is
lost and nothing runs twice."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.producer import TaskHandle
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from tests.support.handlers import read_ledger
from tests.support.outside import OUTSIDE_APP
from tests.support.processes import WorkerProcess
from tests.support.worker import wait_until_sync

pytestmark = pytest.mark.slow

#: The worker's lease: longer than the outage and the worker's back-off after it (a few
#: seconds), so no lease expires while Redis is down and any second run is a duplicate.
LEASE = 10.0
FINISHED = {TaskState.SUCCEEDED, TaskState.DEAD, TaskState.FAILED}


def test_worker_survives_a_redis_crash_and_restart(
    redis_server: RedisServer, r: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    # the broker is a Redis of this test, killed and restarted; the ledger lives in the
    # session's server (`redis_server`, `r`), which the test never touches
    durable = RedisServer(redis_server.binary, data_dir=tmp_path / "data", appendonly=True).start()
    settings = Settings(
        redis_url=durable.url, prefix=prefix, lease_timeout=LEASE, retry_backoff_base=0.01
    )
    app = Conveyor(settings=settings)
    worker = WorkerProcess(settings, tmp_path, "--concurrency", "8", app=OUTSIDE_APP)

    def enqueue(label: str) -> TaskHandle:
        return app.enqueue("record_outside", redis_server.url, label, seconds=0.05)

    try:
        handles = [enqueue(f"a{i}") for i in range(100)]
        wait_until_sync(lambda: len(read_ledger(r, prefix)) > 20, 20, "work to be under way")
        durable.kill()  # SIGKILL: no chance to save anything beyond the AOF
        time.sleep(1.0)
        durable.start()
        handles += [enqueue(f"b{i}") for i in range(20)]
        wait_until_sync(lambda: all(h.status() in FINISHED for h in handles), 60, "all tasks")
        assert {h.status() for h in handles} == {TaskState.SUCCEEDED}
        assert worker.alive(), worker.log()
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) == 0, worker.log()
    finally:
        worker.stop()
        app.close()
        durable.cleanup()
    entries = read_ledger(r, prefix)
    starts = Counter(e["id"] for e in entries if e["event"] == "start")
    ends = Counter(e["id"] for e in entries if e["event"] == "end")
    # every acknowledged task ran to its end, nothing else ran, and nothing ran twice
    assert set(starts) == set(ends) == {h.id for h in handles}
    assert {i: n for i, n in starts.items() if n > 1} == {}, "duplicates"
    assert "unavailable" in worker.log()  # the worker saw the outage and rode it out
