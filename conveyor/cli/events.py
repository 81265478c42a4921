"""`conveyor events`: tail the state changes of the queues, as they happen."""

from __future__ import annotations

import contextlib

import click

from conveyor.broker.events import START, parse_cursor
from conveyor.broker.inspect import SyncInspector
from conveyor.cli.output import dumps
from conveyor.cli.root import Context, inspect, pass_context
from conveyor.events import Event
from conveyor.model import utc_iso

#: Seconds one blocking read waits before the next (the queues are listed again between:
#: a queue created meanwhile is followed too).
FOLLOW_BLOCK = 5.0


@click.command()
@click.option("--queue", "queues", multiple=True, help="Only this queue (repeatable).")
@click.option("--task", "names", multiple=True, help="Only tasks of this name (repeatable).")
@click.option(
    "--since",
    help="Start after this event id (`start`: from the oldest kept). Default: from now.",
)
@click.option("--follow/--no-follow", default=True, help="Wait for new events (default).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_context
def events(
    ctx: Context,
    /,
    queues: tuple[str, ...],
    names: tuple[str, ...],
    since: str | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Print task state changes (enqueued, started, succeeded, ...) as they happen.

    Every line carries the event's id: `--since ID` resumes after it.
    """
    wanted = list(queues) or None
    if since not in (None, "start"):
        try:
            parse_cursor(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None

    def tail(inspector: SyncInspector) -> None:
        cursor = START if since == "start" else since or inspector.latest_event(wanted)
        while True:
            page = inspector.events(wanted, after=cursor, count=1000, block=FOLLOW_BLOCK * follow)
            for event in page:
                if not names or event.task in names:
                    click.echo(dumps(event.as_dict()) if as_json else line(event))
            if page:
                cursor = page[-1].id
            elif not follow:
                return

    with contextlib.suppress(KeyboardInterrupt):  # the way to stop following
        inspect(ctx, tail)


def line(event: Event) -> str:
    """One event as a line: when, queue, what, task id and name, then its fields."""
    extra = " ".join(f"{k}={v}" for k, v in event.fields.items())
    head = f"{utc_iso(event.at / 1000)} {event.id} {event.queue} {event.kind:<10}"
    return f"{head} {event.task_id} {event.task} {extra}".rstrip()
