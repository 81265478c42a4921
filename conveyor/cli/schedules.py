"""`conveyor schedules`: list, add (upsert), remove, pause, resume and run-now."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from conveyor import serializers
from conveyor.cli.output import dumps
from conveyor.cli.root import Context, inspect, operator, pass_context, run_operation
from conveyor.errors import SerializationError
from conveyor.schedule import MISFIRES, ScheduleInfo
from conveyor.schedules import build_schedule, schedule_message


@click.group()
def schedules() -> None:
    """Periodic schedules: what runs when, and its next and last run."""


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@pass_context
def list_schedules(ctx: Context, as_json: bool) -> None:
    """Every schedule: id, timing, task, next run, last run, paused."""
    infos = inspect(ctx, lambda i: i.schedules.list())
    if as_json:
        for info in infos:
            click.echo(dumps(info.to_json()))
        return
    if not infos:
        click.echo("no schedules")
        return
    click.echo("id\ttiming\ttask\tnext_run\tlast_run\tpaused")
    for info in infos:
        row = info.to_json()
        click.echo(
            f"{info.id}\t{info.schedule.timing.describe()}\t{info.schedule.task}\t"
            f"{row['next_run'] or '-'}\t{row['last_run'] or '-'}\t{'yes' if info.paused else 'no'}"
        )


@schedules.command("add")
@click.argument("schedule_id")
@click.argument("task")
@click.option("--cron", help='A 5-field cron expression, e.g. "*/5 * * * *".')
@click.option("--tz", help="The cron expression's IANA time zone (default UTC).")
@click.option("--every", type=float, help="Seconds between ticks (instead of --cron; >= 1).")
@click.option("--args", "args_json", help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", help="JSON object of keyword arguments.")
@click.option("--queue", help="Queue (default: the task's, with --app; else 'default').")
@click.option("--priority", type=click.IntRange(-100, 100), help="Higher runs first.")
@click.option("--max-retries", type=click.IntRange(min=0))
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--misfire",
    type=click.Choice(MISFIRES),
    default="skip",
    show_default=True,
    help="Ticks missed while no worker ran: none, the latest, or each (bounded).",
)
@click.option(
    "--jitter",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Each tick's task waits a fixed random delay up to this many seconds.",
)
@click.option(
    "--app",
    "app_spec",
    metavar="MODULE:APP",
    help="Import this app: the task must be registered, its queue applies.",
)
@pass_context
def add_schedule(
    ctx: Context,
    /,
    schedule_id: str,
    task: str,
    app_spec: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    **given: Any,
) -> None:
    """Create or replace schedule SCHEDULE_ID: TASK at each tick (prints it as JSON).

    An existing schedule keeps its state: paused stays paused, and ticks count from now
    only if the timing changed.
    """  # fmt: skip
    args = _json(args_json, "--args", list) if args_json else []
    kwargs = _json(kwargs_json, "--kwargs", dict) if kwargs_json else {}

    def upsert() -> ScheduleInfo:
        registry = _registry(app_spec) if app_spec else None
        schedule = build_schedule(schedule_id, task, registry, args=args, kwargs=kwargs, **given)
        return inspect(ctx, lambda i: _upserted(i.schedules, schedule))

    click.echo(dumps(run_operation(upsert).to_json()))


def _upserted(store: Any, schedule: Any) -> ScheduleInfo:
    store.upsert(schedule, actor=operator())
    info: ScheduleInfo = store.get(schedule.id)
    return info


def _registry(app_spec: str) -> Mapping[str, object]:
    from conveyor.cli.worker import load_app  # the worker's loader, imported only here

    return load_app(app_spec).tasks


def _json(text: str, option: str, kind: type) -> Any:
    try:
        value = serializers.loads(text)
    except SerializationError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=option)
    return value


@schedules.command("remove")
@click.argument("schedule_id")
@pass_context
def remove_schedule(ctx: Context, schedule_id: str) -> None:
    """Delete a schedule (one still declared in running code comes back within a minute)."""
    inspect(ctx, lambda i: i.schedules.remove(schedule_id, actor=operator()))
    click.echo(f"removed {schedule_id}")


@schedules.command("pause")
@click.argument("schedule_id")
@pass_context
def pause_schedule(ctx: Context, schedule_id: str) -> None:
    """Fire no tick of a schedule until it is resumed."""
    inspect(ctx, lambda i: i.schedules.set_paused(schedule_id, True, actor=operator()))
    click.echo(f"paused {schedule_id}")


@schedules.command("resume")
@click.argument("schedule_id")
@pass_context
def resume_schedule(ctx: Context, schedule_id: str) -> None:
    """Fire a paused schedule again from its next tick."""
    inspect(ctx, lambda i: i.schedules.set_paused(schedule_id, False, actor=operator()))
    click.echo(f"resumed {schedule_id}")


@schedules.command("run-now")
@click.argument("schedule_id")
@pass_context
def run_now(ctx: Context, schedule_id: str) -> None:
    """Enqueue the schedule's task now, once, and print its id."""

    def run() -> str:
        app = ctx.app()
        try:
            schedule = app.inspector.schedules.get(schedule_id).schedule
            [handle] = app.enqueue_many([schedule_message(schedule, app.tasks)])
            app.inspector.schedules.ran(schedule_id, handle.id, actor=operator())
            return handle.id
        finally:
            app.close()

    click.echo(run_operation(run))
