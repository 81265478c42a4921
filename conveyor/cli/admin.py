"""`conveyor fsck` and `conveyor doctor`: checks an operator runs on a deployment."""

from __future__ import annotations

import sys

import click

from conveyor.cli.root import Context, inspect, pass_context
from conveyor.tools.doctor import Doctor, Verdict


@click.command()
@click.option("--repair", is_flag=True, help="Fix each finding (one atomic script each).")
@click.option("--queue", "queues", multiple=True, help="Only this queue (repeatable).")
@pass_context
def fsck(ctx: Context, repair: bool, queues: tuple[str, ...]) -> None:
    """Find states of the keyspace that should not exist, and optionally repair them.

    Safe on a live system: it reads with SCAN in bounded batches and checks each batch
    in one atomic script. Exit code 0 when the keyspace is consistent (or was repaired),
    1 when problems were found and left as they are.
    """

    findings = inspect(ctx, lambda i: i.fsck(repair, queues))
    for finding in findings:
        click.echo(str(finding))
    verb = "repaired" if repair else "found"
    click.echo(f"{len(findings)} problem(s) {verb}", err=True)
    sys.exit(0 if repair or not findings else 1)


@click.command()
@pass_context
def doctor(ctx: Context) -> None:
    """Check the Redis this deployment uses; print a verdict per line with its fix.

    Version, cluster or sentinel mode, maxmemory-policy (must be noeviction),
    persistence, memory headroom, latency, clock difference, and live workers.
    Exit code 1 on a blocking problem, so it can gate a deploy.
    """

    checks = inspect(ctx, lambda i: Doctor(i).run())
    for check in checks:
        fix = f"  (fix: {check.fix})" if check.fix else ""
        click.echo(f"{check.verdict.upper():<5} {check.name:<12} {check.detail}{fix}")
    sys.exit(1 if any(c.verdict is Verdict.FAIL for c in checks) else 0)
