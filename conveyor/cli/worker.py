"""`conveyor worker`: run a worker for an app's tasks."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

import click

from conveyor.cli.early_stop import EarlyStop
from conveyor.cli.root import Context, check_is_redis, pass_context, run_operation
from conveyor.errors import ConfigurationError
from conveyor.settings import ENV_PREFIX
from conveyor.worker.pool import WorkerPool
from conveyor.worker.selection import QueueSelection

if TYPE_CHECKING:
    from conveyor.app import Conveyor

#: Default port of a worker's exporter (the seeds' choice).
DEFAULT_METRICS_PORT = 2112


def load_app(spec: str) -> Conveyor:
    """Import `module:attribute` (default attribute `app`) and check it is a Conveyor app."""
    from conveyor.app import Conveyor

    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, Conveyor):
        raise ConfigurationError(f"{spec!r} is not a Conveyor app (expected module:attribute)")
    return app


@click.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option(
    "-q", "--queues", default="default", show_default=True,
    envvar=["CONVEYOR_QUEUES", "QUEUE_NAME"],
    help="Queues in strict order (a,b,c) or weighted (a:6,b:3,c:1).",
)  # fmt: skip
@click.option("-c", "--concurrency", type=click.IntRange(min=1),
              envvar=["CONVEYOR_CONCURRENCY", "WORKER_CONCURRENCY"],
              help="Tasks run at once (default 50).")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), envvar="CONVEYOR_THREADS",
              help="Threads for sync handlers (default: the concurrency). Quick handlers "
                   "run fastest on 8-16 with a larger --concurrency.")  # fmt: skip
@click.option("--processes", type=click.IntRange(min=1),
              help="Child processes for process-executor tasks (default: CPUs).")  # fmt: skip
@click.option("--lease-timeout", type=click.FloatRange(min=0.1), envvar="CONVEYOR_LEASE_TIMEOUT",
              help="Seconds before a dead worker's tasks are recovered (default 30).")  # fmt: skip
@click.option("--shutdown-grace", type=click.FloatRange(min=0), envvar="CONVEYOR_SHUTDOWN_GRACE",
              help="Seconds running tasks may finish after SIGTERM (default 25).")  # fmt: skip
@click.option("-w", "--workers", type=click.IntRange(min=1), default=1, show_default=True,
              envvar="CONVEYOR_WORKERS",
              help="Worker processes, supervised; their metrics are summed.")  # fmt: skip
@click.option("--worker-id", help="Name in logs and the registry (default host-pid-random).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=DEFAULT_METRICS_PORT,
              show_default=True, envvar=["CONVEYOR_METRICS_PORT", "METRICS_PORT"],
              help="Serve Prometheus metrics on this port; 0 turns the exporter off.")  # fmt: skip
@click.option("--metrics-host", default="0.0.0.0", show_default=True,
              envvar="CONVEYOR_METRICS_HOST", help="Interface the exporter binds.")  # fmt: skip
@pass_context
def worker(
    ctx: Context,
    app_spec: str,
    queues: str,
    concurrency: int | None,
    threads: int | None,
    processes: int | None,
    lease_timeout: float | None,
    shutdown_grace: float | None,
    workers: int,
    worker_id: str | None,
    metrics_port: int,
    metrics_host: str,
) -> None:
    """Process tasks of MODULE:APP (e.g. myapp.tasks:app) until SIGTERM or SIGINT.

    The first signal drains: no new claims, running tasks get the grace period, the
    rest go back to pending at once. A second signal stops right away, losing nothing.
    With --workers N, a supervisor runs N such processes and restarts any that dies.
    """

    def load() -> Conveyor:
        app = load_app(app_spec)
        overrides = {
            **ctx.options,
            "lease_timeout": lease_timeout,
            "shutdown_grace": shutdown_grace,
        }
        changed = {k: v for k, v in overrides.items() if v is not None}
        app.settings = app.settings.replace(**changed)
        return app

    def start() -> None:
        # until the worker (or pool) handles them, a stop signal ends the process cleanly:
        # nothing has been claimed yet; one whose exit was dropped is handed over
        early = EarlyStop()
        early.install()
        check_is_redis(ctx)  # a URL at something else fails here, not in every component
        if workers > 1:
            child = [app_spec, "--queues", queues, "--workers", "1", "--metrics-port", "0"]
            for flag, value in (("--concurrency", concurrency), ("--threads", threads),
                                ("--processes", processes),
                                ("--lease-timeout", lease_timeout),
                                ("--shutdown-grace", shutdown_grace)):  # fmt: skip
                child += [flag, str(value)] if value is not None else []
            # the root options reach the children as the variables they stand for
            root = {
                f"{ENV_PREFIX}{k.upper()}": str(v) for k, v in ctx.options.items() if v is not None
            }
            pool = WorkerPool(
                child, workers, QueueSelection.parse(queues).names, metrics_port, metrics_host,
                env=root,
            )  # fmt: skip
            early.hand_over(pool.request_stop)
            sys.exit(pool.run(lambda: load().settings))
        from conveyor.worker.loop import run_event_loop
        from conveyor.worker.runtime import Worker

        runner = Worker(
            load(), queues, concurrency=concurrency, threads=threads, processes=processes,
            worker_id=worker_id, handle_signals=True,
            metrics_port=metrics_port, metrics_host=metrics_host,
        )  # fmt: skip
        # a stop already received makes the worker stop as soon as it started, claiming
        # nothing; from here until it handles signals itself, each one stops it
        early.hand_over(lambda _: runner.stop(fast=len(early.received) > 1))
        run_event_loop(runner.run())

    run_operation(start)
