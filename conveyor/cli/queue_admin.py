"""`conveyor queues`, `flow`, `pause`, `resume` and `workers`."""

from __future__ import annotations

import click

from conveyor.broker.inspect import SyncInspector
from conveyor.broker.records import QueueStats
from conveyor.cli.output import described, dumps
from conveyor.cli.root import Context, inspect, operator, pass_context
from conveyor.errors import ConveyorError
from conveyor.names import validate_queue_name

COLUMNS = ("pending", "active", "scheduled", "dead")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_context
def queues(ctx: Context, as_json: bool) -> None:
    """Show every queue's depth per state."""
    stats, nodes = inspect(ctx, lambda i: _with_nodes(i.queue_stats(), i))
    if as_json:
        on = [{"node": nodes[s.name]} if nodes else {} for s in stats]
        click.echo(dumps([described(s.to_json()) | n for s, n in zip(stats, on, strict=True)]))
        return
    if not stats:
        click.echo("no queues yet")
        return
    width = max(5, *(len(s.name) for s in stats))
    node_head = "  node" if nodes else ""
    header = f"{'queue':<{width}}  " + "  ".join(f"{c:>9}" for c in COLUMNS) + "  paused"
    click.echo(header + node_head)
    for s in stats:
        counts = "  ".join(f"{getattr(s, c):>9}" for c in COLUMNS)
        paused = "yes" if s.paused else "no"
        if nodes:
            paused = f"{paused:<6}  {nodes[s.name]}"
        click.echo(f"{s.name:<{width}}  {counts}  {paused}")


def _with_nodes(
    stats: list[QueueStats], inspector: SyncInspector
) -> tuple[list[QueueStats], dict[str, str]]:
    """The stats, and on a Redis Cluster the master holding each queue (a standalone
    Redis is not asked: CLUSTER is no command the least-privilege ACL allows)."""
    if not inspector.broker.settings.cluster:
        return stats, {}
    return stats, inspector.queue_nodes([s.name for s in stats])


@click.command()
@click.argument("queue")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_context
def flow(ctx: Context, queue: str, as_json: bool) -> None:
    """Show a queue's flow control: concurrency slots, rate limits, fair groups."""
    state = inspect(ctx, lambda i: i.flow(validate_queue_name(queue)))
    if as_json:
        click.echo(dumps(state.to_json()))
        return
    if not (state.concurrency or state.rates or state.groups):
        click.echo(f"queue {queue}: no flow control in use")
        return
    for c in state.concurrency:
        click.echo(f"concurrency {c.key}: {c.in_use} running, {c.waiting} waiting for a slot")
    for r in state.rates:
        booked = f"booked {r.booked_seconds:.1f} s ahead" if r.booked_seconds else "free now"
        click.echo(f"rate limit {r.key}: {booked}")
    click.echo(f"fair groups with tasks ahead: {state.groups}")


#: A queue is known once something was enqueued to it (or it was paused with --create).
create_option = click.option(
    "--create", is_flag=True,
    help="Accept a queue nothing was enqueued to yet (it is listed from then on).",
)  # fmt: skip


@click.command()
@click.argument("queue")
@create_option
@pass_context
def pause(ctx: Context, queue: str, create: bool) -> None:
    """Stop workers from claiming tasks of QUEUE (enqueueing still works).

    QUEUE must be known (a typo would otherwise pause nothing, and stay listed) unless
    --create is given: exit code 1 if it is not.
    """
    _set_paused(ctx, queue, True, create)


@click.command()
@click.argument("queue")
@create_option
@pass_context
def resume(ctx: Context, queue: str, create: bool) -> None:
    """Let workers claim tasks of QUEUE again.

    QUEUE must be known unless --create is given: exit code 1 if it is not.
    """
    _set_paused(ctx, queue, False, create)


class UnknownQueueError(ConveyorError):
    """No task was ever enqueued to this queue."""


def _set_paused(ctx: Context, queue: str, paused: bool, create: bool) -> None:
    def apply(inspector: SyncInspector) -> None:
        validate_queue_name(queue)
        if not create and queue not in inspector.queue_names():
            raise UnknownQueueError(
                f"unknown queue {queue!r}: nothing was ever enqueued to it "
                f"(check the name, or pass --create to {'pause' if paused else 'resume'} it anyway)"
            )
        inspector.set_paused(queue, paused, actor=operator())

    inspect(ctx, apply)
    click.echo(f"{'paused' if paused else 'resumed'} {queue}")


@click.command()
@pass_context
def workers(ctx: Context) -> None:
    """List the workers alive by heartbeat, as JSON lines.

    With none alive, says so on stderr (stdout stays empty, for scripts), exit code 0.
    """

    infos = inspect(ctx, lambda i: i.workers())
    for info in infos:
        click.echo(dumps(described(info)))
    if not infos:
        click.echo("no workers alive", err=True)
