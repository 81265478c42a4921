"""`conveyor load`: a bounded stress test through the HTTP API or straight to Redis."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import click

from conveyor import serializers
from conveyor.cli.root import EXIT_FAILED, Context, pass_context, run_operation
from conveyor.errors import SerializationError
from conveyor.tools.load import (
    DEFAULT_TASK,
    DEFAULT_URL,
    MAX_BATCH,
    MAX_CONNECTIONS,
    MAX_DURATION,
    MAX_TASKS,
    NoProgress,
    Plan,
    Progress,
    Via,
    is_loopback,
    run,
)

#: The seeds' example payload: a small JSON value, as real notifications carry.
DEFAULT_PAYLOAD = '"user@example.com"'
#: Tasks per enqueue_many round trip when sending to Redis.
REDIS_BATCH = 100


@click.command()
@click.option("-n", "--tasks", type=click.IntRange(1, MAX_TASKS),
              help=f"Send this many tasks (at most {MAX_TASKS:,}).")  # fmt: skip
@click.option("-d", "--duration", type=click.FloatRange(0, MAX_DURATION, min_open=True),
              help="Or send for this many seconds (at most 24 h).")  # fmt: skip
@click.option("--rate", type=click.FloatRange(min=0), default=0.0,
              help="Tasks per second; 0 (the default): as fast as possible.")  # fmt: skip
@click.option("--via", type=click.Choice([v.value for v in Via]), default=Via.HTTP.value,
              show_default=True, help="Through the HTTP API, or straight to Redis.")  # fmt: skip
@click.option("--url", default=DEFAULT_URL, show_default=True, help="The API's base URL.")
@click.option("--token", envvar="CONVEYOR_API_TOKEN",
              help="A write token of the API (env CONVEYOR_API_TOKEN).")  # fmt: skip
@click.option("--allow-remote", is_flag=True,
              help="Allow a target beyond this machine (refused by default).")  # fmt: skip
@click.option("-c", "--connections", type=click.IntRange(1, MAX_CONNECTIONS), default=8,
              show_default=True, help="Concurrent senders: HTTP connections, or batches in "
              "flight to Redis.")  # fmt: skip
@click.option("--batch", type=click.IntRange(1, MAX_BATCH),
              help=f"Tasks per request: POST /v1/tasks/batch above 1 (http, default 1), "
              f"enqueue_many (redis, default {REDIS_BATCH}).")  # fmt: skip
@click.option("--task", "task_name", default=DEFAULT_TASK, show_default=True,
              help="Task name (default: a cheap task of `conveyor demo`'s module).")  # fmt: skip
@click.option("--payload", default=DEFAULT_PAYLOAD, show_default=True,
              help="JSON value passed to the handler as its one argument.")  # fmt: skip
@click.option("--queue", help="Queue (default: 'default').")
@click.option("--wait", is_flag=True,
              help="Then wait for every task to finish and report completion figures.")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(0, MAX_DURATION), default=60.0,
              show_default=True, help="Seconds --wait waits at most.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, no progress.")
@pass_context
def load(ctx: Context, /, **options: Any) -> None:
    """Send tasks and measure: enqueue throughput, and with --wait completion throughput
    and wait latency (p50, p95, p99) read from the task records.

    Give --tasks N or --duration SECONDS. The target must be this machine unless
    --allow-remote is given. With --wait it sends at most 1,000,000 tasks and exits with
    1 if some did not finish within --timeout; it exits with 1 too if nothing was sent.
    Ctrl-C stops the run and reports what it did (exit 1); a second Ctrl-C aborts.
    """
    plan = _plan(options)
    target = plan.url if plan.via is Via.HTTP else (ctx.redis_url or ctx.settings().redis_url)
    if not options["allow_remote"] and not is_loopback(target):
        raise click.UsageError(f"{target} is not this machine: add --allow-remote to load it")
    timeout: float = options["timeout"]
    progress, stop = _progress(options["as_json"])
    try:
        report = run_operation(lambda: asyncio.run(_interruptible(plan, ctx, timeout, progress)))
    finally:
        stop()
    if options["as_json"]:
        click.echo(serializers.dumps(report).decode())
    else:
        click.echo("\n".join(describe(report)))
    if _failed(report):
        sys.exit(EXIT_FAILED)


async def _interruptible(
    plan: Plan, ctx: Context, timeout: float, progress: Progress
) -> dict[str, Any]:
    """The run, where a first Ctrl-C stops it with a report of what was done, and a
    second one interrupts at once."""
    stop, loop = asyncio.Event(), asyncio.get_running_loop()

    def interrupt() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        return await run(plan, ctx.app(), timeout, progress, stop)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _plan(options: dict[str, Any]) -> Plan:
    """The plan the options describe; a usage error if they contradict each other."""
    via = Via(options["via"])
    try:
        payload = serializers.loads(options["payload"])
    except SerializationError as exc:
        raise click.BadParameter(str(exc), param_hint="--payload") from None
    plan = Plan(
        via=via, task=options["task_name"], payload=payload, queue=options["queue"],
        tasks=options["tasks"], duration=options["duration"], rate=options["rate"],
        connections=options["connections"],
        batch=options["batch"] or (REDIS_BATCH if via is Via.REDIS else 1),
        url=options["url"].rstrip("/"), token=options["token"], wait=options["wait"],
    )  # fmt: skip
    if problems := plan.problems():
        raise click.UsageError("; ".join(problems))
    return plan


def _failed(report: dict[str, Any]) -> bool:
    """Nothing was sent, --wait gave up on some tasks, or Ctrl-C cut the run short."""
    done = report["completion"]
    unfinished = bool(done and done["unfinished"])
    return bool(report["sending"]["sent"] == 0 or unfinished or report["interrupted"])


class _Bar:
    """A rich progress bar on stderr, one task per phase."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        self.bar = Progress(*columns, console=Console(stderr=True), transient=True)
        self.task: Any = None
        self.bar.start()

    def phase(self, description: str, total: int | None) -> None:
        """A new bar; the previous one is complete."""
        if self.task is not None:
            self.bar.stop_task(self.task)
        self.task = self.bar.add_task(description, total=total)

    def advance(self, steps: int) -> None:
        """Move the current bar."""
        self.bar.advance(self.task, steps)


def _progress(as_json: bool) -> tuple[Progress, Any]:
    """A bar on stderr when it is a terminal and the output is for people; its stop."""
    if as_json or not sys.stderr.isatty():
        return NoProgress(), lambda: None
    bar = _Bar()
    return bar, bar.bar.stop


def describe(report: dict[str, Any]) -> list[str]:
    """The report for people, a few lines."""
    s = report["sending"]
    rate = f"{s['per_second']:,.0f} tasks/s" if s["per_second"] else "-"
    lines = [
        f"sent {s['sent']:,} {s['task']} tasks to queue {s['queue']} via {s['via']} "
        f"in {s['seconds']:.2f} s: {rate}",
        f"  requests {s['requests']:,}, latency {_quantiles(s['request_seconds'])}",
    ]
    if s["errors"]:
        errors = ", ".join(f"{kind}: {n:,}" for kind, n in s["errors"].items())
        lines.append(f"  not sent: {errors}")
    done = report["completion"]
    if done:
        rate = f"{done['per_second']:,.0f} tasks/s" if done["per_second"] else "-"
        span = f"{done['seconds']:.2f} s" if done["seconds"] is not None else "-"
        states = ", ".join(f"{state} {n:,}" for state, n in done["states"].items()) or "none"
        lines += [
            f"finished {done['finished']:,} ({states}) in {span} from the first enqueue: {rate}",
            f"  wait (enqueued -> started) {_quantiles(done['wait_seconds'])}",
            f"  end to end (enqueued -> finished) {_quantiles(done['end_to_end_seconds'])}",
        ]
        if done["unfinished"] or done["missing"]:
            lines.append(f"  unfinished {done['unfinished']:,}, missing {done['missing']:,}")
        if done["missing"] and done["missing"] == s["sent"]:
            lines.append(
                "  no record of any task sent: is this the Redis behind the API? Pass its "
                "--redis-url (and --prefix); `conveyor up` prints the command to use"
            )
    if report["interrupted"]:
        lines.append("interrupted: the figures cover the run up to Ctrl-C")
    return lines


def _quantiles(values: dict[str, float] | None) -> str:
    if values is None:
        return "-"
    return " ".join(f"{name} {seconds * 1000:,.1f} ms" for name, seconds in values.items())
