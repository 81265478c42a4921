"""Redis killed and restarted under a running worker: with appendfsync always, nothing is lost."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from tests.support.handlers import read_ledger
from tests.support.processes import WorkerProcess
from tests.support.worker import wait_until_sync

pytestmark = pytest.mark.slow


def test_worker_survives_a_redis_crash_and_restart(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    durable = RedisServer(redis_server.binary, data_dir=tmp_path / "data", appendonly=True).start()
    settings = Settings(
        redis_url=durable.url, prefix=prefix, lease_timeout=2.0, retry_backoff_base=0.01
    )
    app = Conveyor(settings=settings)
    r = redis.Redis.from_url(durable.url)
    worker = WorkerProcess(settings, tmp_path, "--concurrency", "8")
    try:
        # the handler writes its ledger to the same Redis, so it fails during the outage:
        # retries (not the default max_retries=0 of the test app) carry it through
        handles = [app.enqueue("record", f"a{i}", seconds=0.05, max_retries=20) for i in range(100)]
        wait_until_sync(lambda: len(read_ledger(r, prefix)) > 20, 20, "work to be under way")
        durable.kill()  # SIGKILL: no chance to save anything beyond the AOF
        time.sleep(1.0)
        durable.start()
        handles += [app.enqueue("record", f"b{i}", seconds=0.05) for i in range(20)]
        wait_until_sync(
            lambda: all(h.status() == TaskState.SUCCEEDED for h in handles), 60, "all tasks"
        )
        assert worker.alive(), worker.log()
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) == 0, worker.log()
        # the ledger lives in the same (restarted) Redis; AOF always kept it too
        ends = Counter(e["id"] for e in read_ledger(r, prefix) if e["event"] == "end")
    finally:
        worker.stop()
        r.close()
        app.close()
        durable.cleanup()
    assert {h.id for h in handles} <= set(ends)  # every acknowledged task ran to its end
    assert "unavailable" in worker.log()  # the worker saw the outage and rode it out
