"""Dramatiq under the benchmark protocol (see _common.py); runs in .bench/venvs/dramatiq.

Configuration: RedisBroker with Dramatiq's default middleware (no results backend), sync
actors, started by the stock CLI: `dramatiq dramatiq_driver --processes P --threads 16`
(a parent process supervising P worker processes of 16 worker threads each). On 2 cores
16 and 32 threads tied and beat 4 and 8 (the CLI default): the handler only waits on
Redis. Everything else is Dramatiq's default: prefetch = 2 x threads; the Redis broker
cannot block, so an idle consumer polls with a backoff from 5 ms up to worker_timeout
(1 s), which a task sent into an idle worker may wait for; a message is acked after its
actor returns (at-least-once: a dead worker's unacked messages are requeued once its
heartbeat times out). Dramatiq has no bulk enqueue: `group(...).run()` is its idiomatic
way to send many messages, and it sends them one by one (one EVALSHA each).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import dramatiq
from _common import COUNTER_KEY, Driver, counter_client, main, record_latency
from dramatiq.brokers.redis import RedisBroker

THREADS = 16

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"))
dramatiq.set_broker(broker)

_client = counter_client  # the handlers' client, shared with every driver


@dramatiq.actor(actor_name="noop")
def noop(task_payload: dict[str, Any]) -> None:
    _client().incr(COUNTER_KEY)


@dramatiq.actor(actor_name="latency")
def latency(task_payload: dict[str, Any]) -> None:
    record_latency(_client(), task_payload)
    _client().incr(COUNTER_KEY)


class Producer:
    """Sends through the actors of the module the workers import, bound to `url`."""

    def __init__(self, url: str) -> None:
        os.environ["BENCH_REDIS_URL"] = url  # read by the module's broker on import
        import dramatiq_driver as tasks  # this file as a module, not as __main__

        self.broker = tasks.broker
        self.actors: dict[str, dramatiq.Actor] = {"noop": tasks.noop, "latency": tasks.latency}

    def one(self, task: str, task_payload: dict[str, Any]) -> None:
        self.actors[task].send(task_payload)

    def bulk(self, task: str, payloads: Sequence[dict[str, Any]]) -> None:
        actor = self.actors[task]
        dramatiq.group(actor.message(p) for p in payloads).run()

    def close(self) -> None:
        self.broker.close()
        self.broker.client.close()


def describe() -> dict[str, Any]:
    common = (
        f"{THREADS} threads each, RedisBroker, default middleware, prefetch {2 * THREADS}, "
        "idle polling backoff up to 1 s, ack after the actor returns (at-least-once)"
    )
    return {
        "name": "Dramatiq",
        "version": version("dramatiq"),
        "one_process": f"dramatiq --processes 1 --threads {THREADS}: 1 worker process, {common}",
        "two_processes": f"dramatiq --processes 2 --threads {THREADS}: 2 worker processes, "
        + common,
        "bulk_api": "dramatiq.group(messages).run(): enqueues one by one (no bulk enqueue)",
        "async_api": None,
    }


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "dramatiq", "dramatiq_driver",
            "--processes", str(processes), "--threads", str(THREADS)]  # fmt: skip
    return argv, {}


if __name__ == "__main__":
    main(Driver(describe, Producer, worker_command))
