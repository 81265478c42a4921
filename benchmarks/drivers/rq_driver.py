"""RQ under the benchmark protocol (see _common.py).

Configuration: `SimpleWorker` (runs each job in the worker process: RQ's default `Worker`
forks a work horse per job, which costs far more than a no-op job), quiet logging (WARNING)
and result_ttl=0 (no result kept: the job is deleted once it succeeds). One process is one
`rq worker`; two processes are `rq worker-pool -n 2` (its supervisor forks two workers and
only watches them). Jobs are acknowledged RQ's way: a job moves to the started registry as
a worker takes it and leaves it when done. Bulk is `Queue.enqueue_many` with
`Queue.prepare_data`, one pipeline per 10,000 jobs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import redis
from _common import COUNTER_KEY, Driver, chunks, counter_client, main, record_latency, redis_url
from rq import Queue

WORKER_CLASS = "rq.worker.SimpleWorker"
BULK_CHUNK = 10_000
#: the producer enqueues by import path, so that it does not depend on `__main__`
FUNCTIONS = {"noop": "rq_driver.noop", "latency": "rq_driver.latency"}

_client = counter_client  # the handlers' client, shared with every driver


def noop(task_payload: dict[str, Any]) -> None:
    _client().incr(COUNTER_KEY)


def latency(task_payload: dict[str, Any]) -> None:
    record_latency(_client(), task_payload)
    _client().incr(COUNTER_KEY)


class Producer:
    def __init__(self, url: str) -> None:
        self.connection = redis.Redis.from_url(url)
        self.queue = Queue(connection=self.connection)

    def one(self, task: str, task_payload: dict[str, Any]) -> None:
        self.queue.enqueue(FUNCTIONS[task], task_payload, result_ttl=0)

    def bulk(self, task: str, payloads: Sequence[dict[str, Any]]) -> None:
        function = FUNCTIONS[task]
        for chunk in chunks(payloads, BULK_CHUNK):
            self.queue.enqueue_many(
                [Queue.prepare_data(function, (p,), result_ttl=0) for p in chunk]
            )

    def close(self) -> None:
        self.connection.close()


def describe() -> dict[str, Any]:
    common = (
        f"--worker-class {WORKER_CLASS} --quiet, jobs enqueued with result_ttl=0, default"
        " acknowledgement (a job sits in the started registry until it finishes)"
    )
    return {
        "name": "RQ",
        "version": version("rq"),
        "one_process": f"rq worker {common}",
        "two_processes": f"rq worker-pool -n 2 {common} (+ the pool's idle supervisor)",
        "bulk_api": f"Queue.enqueue_many of Queue.prepare_data, {BULK_CHUNK:,} jobs per call",
        "async_api": None,
    }


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    rq = [sys.executable, "-m", "rq.cli"]
    command = ["worker"] if processes == 1 else ["worker-pool", "-n", str(processes)]
    argv = [*rq, *command, "--url", redis_url(), "--worker-class", WORKER_CLASS, "--quiet"]
    return argv, {}


if __name__ == "__main__":
    main(Driver(describe, Producer, worker_command))
