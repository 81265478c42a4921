"""`conveyor queues`, `pause`, `resume` and `workers`."""

from __future__ import annotations

import click

from conveyor import serializers
from conveyor.cli.root import Context, inspect, operator, pass_context

COLUMNS = ("pending", "active", "scheduled", "dead")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_context
def queues(ctx: Context, as_json: bool) -> None:
    """Show every queue's depth per state."""
    stats = inspect(ctx, lambda i: i.queue_stats())
    if as_json:
        click.echo(serializers.dumps([s.to_json() for s in stats]).decode())
        return
    if not stats:
        click.echo("no queues yet")
        return
    width = max(5, *(len(s.name) for s in stats))
    click.echo(f"{'queue':<{width}}  " + "  ".join(f"{c:>9}" for c in COLUMNS) + "  paused")
    for s in stats:
        counts = "  ".join(f"{getattr(s, c):>9}" for c in COLUMNS)
        click.echo(f"{s.name:<{width}}  {counts}  {'yes' if s.paused else 'no'}")


@click.command()
@click.argument("queue")
@pass_context
def pause(ctx: Context, queue: str) -> None:
    """Stop workers from claiming tasks of QUEUE (enqueueing still works)."""
    _set_paused(ctx, queue, True)


@click.command()
@click.argument("queue")
@pass_context
def resume(ctx: Context, queue: str) -> None:
    """Let workers claim tasks of QUEUE again."""
    _set_paused(ctx, queue, False)


def _set_paused(ctx: Context, queue: str, paused: bool) -> None:
    inspect(ctx, lambda i: i.set_paused(queue, paused, actor=operator()))
    click.echo(f"{'paused' if paused else 'resumed'} {queue}")


@click.command()
@pass_context
def workers(ctx: Context) -> None:
    """List the workers alive by heartbeat, as JSON lines."""

    for info in inspect(ctx, lambda i: i.workers()):
        click.echo(serializers.dumps(info).decode())
