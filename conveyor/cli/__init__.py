"""The `conveyor` command line: one module per group of subcommands."""

from __future__ import annotations

from conveyor.cli import admin, api, dead, demo, queues, tasks, worker
from conveyor.cli.root import cli

for command in (
    worker.worker,
    api.api,
    tasks.enqueue,
    tasks.status,
    tasks.cancel,
    queues.queues,
    queues.pause,
    queues.resume,
    queues.workers,
    dead.dlq,
    admin.fsck,
    admin.doctor,
    demo.demo,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli()


__all__ = ["cli", "main"]
