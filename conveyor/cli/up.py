"""`conveyor up`: Redis, the API, the dashboard and workers on one machine, in one command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from conveyor.cli.root import Context, pass_context, run_operation

DEMO_APP = "conveyor.tools.showcase:app"


@click.command()
@click.argument("app_spec", metavar="[MODULE:APP]", required=False)
@click.option("--demo", is_flag=True,
              help="Run the demo tasks (emails, image resizes, reports; some slow, some "
                   "failing) and keep a gentle stream of them flowing.")  # fmt: skip
@click.option("-q", "--queues", help="Queues the workers take (default: default; with --demo "
              "the demo's).")  # fmt: skip
@click.option("-w", "--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes.")  # fmt: skip
@click.option("-c", "--concurrency", type=click.IntRange(min=1), help="Tasks each runs at once.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface of the API and dashboard (beyond loopback: set tokens).")  # fmt: skip
@click.option("--api-port", type=click.IntRange(1, 65535), default=8085, show_default=True)
@click.option("--dashboard-port", type=click.IntRange(1, 65535), default=8082, show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=2112, show_default=True,
              help="The workers' Prometheus exporter (0: none).")  # fmt: skip
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".conveyor") / "redis", show_default=True,
              help="Where the embedded Redis keeps its append-only file.")  # fmt: skip
@click.option("--shutdown-grace", type=click.FloatRange(min=0), default=25.0, show_default=True,
              help="Seconds running tasks may finish when stopping.")  # fmt: skip
@pass_context
def up(
    ctx: Context,
    app_spec: str | None,
    demo: bool,
    queues: str | None,
    workers: int,
    concurrency: int | None,
    host: str,
    api_port: int,
    dashboard_port: int,
    metrics_port: int,
    data_dir: Path,
    shutdown_grace: float,
) -> None:
    """Run the whole system on this machine: Redis, the API (:8085), the dashboard
    (:8082) and workers for MODULE:APP (metrics on :2112), log lines prefixed by component.

    Without CONVEYOR_REDIS_URL (or --redis-url) it runs an embedded redis-server that keeps
    an append-only file in --data-dir, so tasks outlive a restart. Ctrl-C or SIGTERM stops
    intake, drains the workers, and stops Redis last: nothing is lost.
    """
    from conveyor.tools.showcase import QUEUES
    from conveyor.tools.up import Stack, UpOptions

    if app_spec is None and not demo:
        raise click.UsageError("name the app whose tasks the workers run (MODULE:APP), or --demo")
    options = UpOptions(
        app_spec=app_spec or DEMO_APP,
        queues=queues or (QUEUES if app_spec is None else "default"),
        workers=workers, concurrency=concurrency, host=host, api_port=api_port,
        dashboard_port=dashboard_port, metrics_port=metrics_port, data_dir=data_dir,
        redis_url=ctx.redis_url, prefix=ctx.options.get("prefix"), demo=demo,
        shutdown_grace=shutdown_grace,
    )  # fmt: skip
    sys.exit(run_operation(lambda: Stack(options, click.echo).run()))
