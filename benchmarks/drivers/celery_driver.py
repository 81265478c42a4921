"""Celery (Redis broker) under the benchmark protocol (see _common.py).

Configuration: results ignored (no result backend), Celery's default early acknowledgement
(a message is acked as the worker starts the task) and prefetch multiplier (4). One process
is `-P solo`: measured at least as fast as `-P threads -c 4/8` for a no-op task, with the
least CPU per task. Two processes are `-P prefork -c 2`: two pool processes run the tasks
while the master consumes and dispatches them. Workers run --without-gossip
--without-mingle --without-heartbeat (a lone worker needs no inter-worker chatter) and log
at WARNING. Bulk is `apply_async` on one producer inside kombu's `Producer.batch()` (Redis
pipelines of 1,000 messages): twice as fast as `group(...).apply_async()` (one LPUSH each).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import COUNTER_KEY, Driver, counter_client, main, record_latency, redis_url
from celery import Celery

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL"))
app.conf.task_ignore_result = True

ONE_PROCESS = ["--pool", "solo"]

_client = counter_client  # the handlers' client, shared with every driver


@app.task(name="noop")
def noop(task_payload: dict[str, Any]) -> None:
    _client().incr(COUNTER_KEY)


@app.task(name="latency")
def latency(task_payload: dict[str, Any]) -> None:
    record_latency(_client(), task_payload)
    _client().incr(COUNTER_KEY)


TASKS = {"noop": noop, "latency": latency}


class Producer:
    def __init__(self, url: str) -> None:
        app.conf.broker_url = url

    def one(self, task: str, task_payload: dict[str, Any]) -> None:
        TASKS[task].apply_async((task_payload,))

    def bulk(self, task: str, payloads: Sequence[dict[str, Any]]) -> None:
        send = TASKS[task].apply_async
        with app.producer_or_acquire() as producer, producer.batch():
            for p in payloads:
                send((p,), producer=producer)

    def close(self) -> None:
        app.close()


def describe() -> dict[str, Any]:
    flags = "--without-gossip --without-mingle --without-heartbeat, ignore results, early ack"
    return {
        "name": "Celery",
        "version": version("celery"),
        "one_process": f"celery worker {' '.join(ONE_PROCESS)} ({flags})",
        "two_processes": f"celery worker --pool prefork --concurrency 2 (+ the master; {flags})",
        "bulk_api": "apply_async on one producer in kombu Producer.batch() (pipelines of 1,000)",
        "async_api": None,
    }


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    pool = ONE_PROCESS if processes == 1 else ["--pool", "prefork", "--concurrency", str(processes)]
    argv = [sys.executable, "-m", "celery", "-A", "celery_driver", "-b", redis_url(),
            "worker", *pool, "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    return argv, {}


if __name__ == "__main__":
    main(Driver(describe, Producer, worker_command))
