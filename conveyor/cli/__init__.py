"""The `conveyor` command line: one module per group of subcommands, imported lazily."""

from __future__ import annotations

from conveyor.cli.root import cli


def main() -> None:
    """Console-script entry point."""
    cli()


__all__ = ["cli", "main"]
