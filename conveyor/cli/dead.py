"""`conveyor dlq`: list, show, retry, delete and purge dead letters."""

from __future__ import annotations

from typing import Any

import click

from conveyor.broker.inspect import SyncInspector
from conveyor.cli.output import dumps
from conveyor.cli.root import Context, inspect, operator, pass_context, run_operation
from conveyor.errors import TaskNotFoundError
from conveyor.model import TaskRecord
from conveyor.options import TaskOptions
from conveyor.settings import Settings


@click.group()
def dlq() -> None:
    """Inspect and replay the dead-letter queues."""


@dlq.command("list")
@click.option("--queue", help="One queue (default: all).")
@click.option("--task", "task_name", help="Only dead letters of this task name.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, type=click.IntRange(min=0))
@pass_context
def list_dead(
    ctx: Context, queue: str | None, task_name: str | None, limit: int, offset: int
) -> None:
    """List dead letters, newest first: id, task, reason, error."""

    queues = [queue] if queue else None
    total, records = inspect(
        ctx, lambda i: i.dead_letters(queues, offset=offset, limit=limit, task_name=task_name)
    )
    for record in records:
        error = record.error or {}
        message = f"{error.get('type', '')}: {error.get('message', '')}".strip(": ")
        click.echo(f"{record.id}\t{record.name}\t{record.reason}\t{message}")
    if total > len(records) + offset:
        click.echo(f"... {total - len(records) - offset} more", err=True)


@dlq.command("show")
@click.argument("task_id")
@click.option("--app", "app_spec", metavar="MODULE:APP",
              help="Import this app to resolve the task's decorator options.")  # fmt: skip
@pass_context
def show_dead(ctx: Context, task_id: str, app_spec: str | None) -> None:
    """Print one dead letter's record, traceback included, as JSON.

    "max_retries" is the budget that applied, and "max_retries_from" says where it
    came from: "enqueue" (set when it was enqueued, the only one the record stores),
    "task" (its decorator's; known only with --app MODULE:APP, which imports your app),
    or "default" (the settings': CONVEYOR_MAX_RETRIES, else 3).
    """

    def read(inspector: SyncInspector) -> TaskRecord:
        record = inspector.dead_letter(task_id)
        if record is None:
            raise TaskNotFoundError(f"no dead letter {task_id}")
        return record

    def show() -> dict[str, Any]:
        defaults = _decorator_defaults(app_spec) if app_spec else None
        record = inspect(ctx, read)
        budget, source = _max_retries(record, defaults, ctx.settings())
        return {**record.to_json(), "max_retries": budget, "max_retries_from": source}

    click.echo(dumps(run_operation(show)))


def _decorator_defaults(app_spec: str) -> tuple[Settings, dict[str, TaskOptions]]:
    """The settings and each task's decorator options of the app the workers run."""
    from conveyor.cli.worker import load_app  # the worker's loader, imported only here

    app = load_app(app_spec)
    return app.settings, {name: d.defaults for name, d in app.tasks.items()}


def _max_retries(
    record: TaskRecord,
    app: tuple[Settings, dict[str, TaskOptions]] | None,
    settings: Settings,
) -> tuple[int, str]:
    """The retry budget the worker applied (TaskDefinition.retry_policy's order)."""
    if record.max_retries is not None:
        return record.max_retries, "enqueue"
    if app is None:
        return settings.max_retries, "default"
    app_settings, tasks = app
    options = tasks.get(record.name)
    if options is not None and options.max_retries is not None:
        return options.max_retries, "task"
    return app_settings.max_retries, "default"


@dlq.command("retry")
@click.argument("task_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every dead letter (of --queue/--task).")
@click.option("--queue", help="With --all: one queue (default: all).")
@click.option("--task", "task_name", help="With --all: only this task name.")
@pass_context
def retry_dead(
    ctx: Context,
    task_ids: tuple[str, ...],
    everything: bool,
    queue: str | None,
    task_name: str | None,
) -> None:
    """Requeue dead letters (by id, or --all) as fresh tasks."""
    if bool(task_ids) == everything:
        raise click.UsageError("give task ids, or --all (not both)")

    if task_ids:
        count = len(inspect(ctx, lambda i: i.replay(task_ids, actor=operator())))
    else:
        count = inspect(
            ctx, lambda i: i.replay_all([queue] if queue else None, task_name, actor=operator())
        )
    click.echo(f"requeued {count} dead letters")
    if task_ids and count < len(task_ids):
        raise click.ClickException(f"{len(task_ids) - count} of the ids were not dead letters")


@dlq.command("delete")
@click.argument("task_ids", nargs=-1, required=True)
@pass_context
def delete_dead(ctx: Context, task_ids: tuple[str, ...]) -> None:
    """Delete dead letters by id."""
    count = inspect(ctx, lambda i: i.delete_dead(task_ids, actor=operator()))
    click.echo(f"deleted {count} dead letters")
    if count < len(task_ids):
        raise click.ClickException(f"{len(task_ids) - count} of the ids were not dead letters")


@dlq.command("purge")
@click.option("--queue", help="One queue (default: all).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def purge_dead(ctx: Context, queue: str | None, yes: bool) -> None:
    """Delete every dead letter (of one queue, or all)."""
    if not yes:
        click.confirm(f"Delete every dead letter of {queue or 'every queue'}?", abort=True)

    purged = inspect(ctx, lambda i: i.purge_dead([queue] if queue else None, actor=operator()))
    click.echo(f"purged {purged} dead letters")
