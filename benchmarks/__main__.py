"""`python -m benchmarks`: run the suite, print the markdown report, write the JSON.

python -m benchmarks                       # everything: Conveyor and every peer
python -m benchmarks --peers none --smoke  # CI's smoke run: tiny sizes, Conveyor only
python -m benchmarks --report results.json # the markdown of an earlier run
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click

from benchmarks import report, suite, systems, venvs


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--peers", default="all", show_default=True,
              help=f"Comma-separated peers ({','.join(systems.PEERS)}), all, or none.")  # fmt: skip
@click.option("--smoke", is_flag=True, help="Tiny sizes, one repeat, no AOF pass (CI).")
@click.option("--repeats", type=click.IntRange(min=1), help="Runs per scenario (default 3).")
@click.option("--no-http", is_flag=True, help="Skip the HTTP scenario (it needs wrk).")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              default=Path("benchmarks/results/latest.json"), show_default=True)  # fmt: skip
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path),
              default=Path("benchmarks/results/latest.md"), show_default=True)  # fmt: skip
@click.option("--venvs", "venv_root", type=click.Path(path_type=Path), default=venvs.DEFAULT_ROOT,
              show_default=True, help="Where the peers' virtualenvs live.")  # fmt: skip
@click.option("--redis-server", "binary", default=suite.default_redis_server, show_default=True,
              help="The redis-server binary to run the private servers with.")  # fmt: skip
@click.option("--report", "report_of", type=click.Path(exists=True, path_type=Path),
              help="Print the markdown of an earlier JSON result and exit.")  # fmt: skip
def main(
    peers: str,
    smoke: bool,
    repeats: int | None,
    no_http: bool,
    json_path: Path,
    markdown_path: Path,
    venv_root: Path,
    binary: str,
    report_of: Path | None,
) -> None:
    """Benchmark Conveyor and its Python peers side by side on private Redis servers."""
    if report_of is not None:
        click.echo(report.markdown(json.loads(report_of.read_text())))
        return
    names = {"all": list(systems.PEERS), "none": []}.get(peers, peers.split(","))
    unknown = set(names) - set(systems.PEERS)
    if unknown:
        raise click.BadParameter(
            f"unknown peers: {', '.join(sorted(unknown))}", param_hint="--peers"
        )
    sizes = suite.SMOKE if smoke else suite.Sizes()
    if repeats:
        sizes = replace(sizes, repeats=repeats)
    chosen = [systems.conveyor(), systems.conveyor_sync(), *systems.peers(names, venv_root)]
    results = suite.run(chosen, sizes, _log, binary=binary, with_http=not no_http)
    text = report.markdown(results)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1))
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(text)
    click.echo(text)


if __name__ == "__main__":
    main()
