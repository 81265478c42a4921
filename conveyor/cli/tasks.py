"""`conveyor enqueue`, `status` and `cancel`: one task at a time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from conveyor import serializers
from conveyor.cli.output import dumps
from conveyor.cli.root import Context, inspect, operator, pass_context, run_operation
from conveyor.errors import SerializationError, TaskNotFoundError
from conveyor.ids import queue_of
from conveyor.model import TaskState
from conveyor.options import TaskOptions
from conveyor.producer import Message, TaskHandle

if TYPE_CHECKING:
    from conveyor.broker.inspect import SyncInspector


@click.command()
@click.argument("name")
@click.option("--payload", help="JSON value passed to the handler as its one argument.")
@click.option("--kwargs", "kwargs_json", help="JSON object of keyword arguments.")
@click.option("--queue", help="Queue (default: 'default').")
@click.option("--delay", type=click.FloatRange(min=0), help="Seconds to wait before it runs.")
@click.option("--priority", type=click.IntRange(-100, 100), help="Higher runs first.")
@click.option("--idempotency-key", help="Enqueue at most once per key within its window.")
@click.option("--max-retries", type=click.IntRange(min=0))
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds an attempt may run."
)
@click.option(
    "--durable", is_flag=True, default=None, help="Return only once a replica has the task too."
)
@pass_context
def enqueue(
    ctx: Context,
    /,
    name: str,
    payload: str | None,
    kwargs_json: str | None,
    queue: str | None,
    delay: float | None,
    priority: int | None,
    idempotency_key: str | None,
    max_retries: int | None,
    timeout: float | None,
    durable: bool | None,
) -> None:
    """Enqueue task NAME and print its id."""
    args = () if payload is None else (_json_option(payload, "--payload"),)
    kwargs = _json_option(kwargs_json, "--kwargs") if kwargs_json else {}
    if not isinstance(kwargs, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--kwargs")

    # options and handler kwargs stay apart: a handler argument named "queue" is no option
    def send() -> TaskHandle:
        options = TaskOptions(
            queue=queue,
            delay=delay,
            priority=priority,
            idempotency_key=idempotency_key,
            max_retries=max_retries,
            timeout=timeout,
            durable=durable,
        )
        return ctx.app().enqueue_many([Message(name, args, kwargs, options)])[0]

    handle = run_operation(send)
    click.echo(handle.id + (" (replayed: idempotency key matched)" if handle.replayed else ""))


def _json_option(text: str, option: str) -> Any:
    try:
        return serializers.loads(text)
    except SerializationError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command()
@click.argument("task_id")
@pass_context
def status(ctx: Context, task_id: str) -> None:
    """Print the record of task TASK_ID as JSON."""

    def read() -> dict[str, object]:
        queue_of(task_id)  # a malformed id is its own, clearer, error
        record = ctx.app().get_record(task_id)
        if record is None:
            raise TaskNotFoundError(f"no task {task_id} (never enqueued, or expired)")
        return record.to_json()

    click.echo(dumps(run_operation(read)))


@click.command()
@click.argument("task_id")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds to wait for a running task's worker to stop it (default: do not wait).",
)
@pass_context
def cancel(ctx: Context, task_id: str, wait: float) -> None:
    """Cancel task TASK_ID. One not yet started is cancelled at once; a running one is
    cancelling until its worker stopped it (see --wait)."""
    state = inspect(ctx, lambda i: i.cancel(task_id, actor=operator()))
    if state is not TaskState.CANCELLING:
        click.echo(f"cancelled {task_id}")
        return
    click.echo(f"cancelling {task_id}: it is running, its worker is told to stop it")
    if wait > 0:
        ended = inspect(ctx, lambda i: _ended(i, task_id, wait))
        if ended is not TaskState.CANCELLED:
            raise click.ClickException(f"task {task_id} is still {ended} after {wait:g}s")
        click.echo(f"cancelled {task_id}")


def _ended(inspector: SyncInspector, task_id: str, timeout: float) -> TaskState | None:
    """The task's state once it left `cancelling`, or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        record = inspector.task(task_id)
        state = record.state if record else None
        if state is not TaskState.CANCELLING or time.monotonic() >= deadline:
            return state
        time.sleep(0.05)
