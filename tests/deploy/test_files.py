"""The deployment files of deploy/, checked without a Docker engine: every file parses, every
`conveyor` command line is one the CLI accepts, every metric the dashboard, the alerts and
the autoscaler query is one a real worker and the real API export, and the pieces point at
each other (ports, mounts, data source, grace periods)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest

from conveyor.api.config import parse_tokens
from conveyor.cli import cli
from conveyor.cli.worker import load_app
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port
from tests.api.helpers import enqueue, wait_for_state
from tests.deploy import sources
from tests.deploy.sources import DEPLOY, CommandLine
from tests.support.metrics import Samples, parse
from tests.support.processes import ROOT, worker_env
from tests.support.worker import wait_until

#: Series Prometheus makes itself for every target, not exported by Conveyor.
SYNTHETIC = {"up"}


# -- resolving command lines against the CLI ---------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CONVEYOR_* variable of the test run: a command line sees only its file's own."""
    for name in [n for n in os.environ if n.startswith("CONVEYOR_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def resolve(line: CommandLine, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    """Parse `line` as `conveyor` would, options and variables, without running anything:
    (the subcommand's path, its parameters). An unknown command or option raises."""
    for name, value in line.env:
        monkeypatch.setenv(name, value)
    argv = list(line.argv)
    ctx = cli.make_context("conveyor", argv)
    path = []
    command: click.Command = cli
    while isinstance(command, click.Group):
        # a group parses its own options and keeps what follows its subcommand's name in
        # ctx.args: the name is the argument just before them
        name = argv[len(argv) - len(ctx.args) - 1]
        found = command.get_command(ctx, name)
        assert found is not None, f"{line.where}: no command {name!r} in {line.argv}"
        path.append(name)
        argv = list(ctx.args)
        ctx = found.make_context(name, argv, parent=ctx)
        command = found
    return " ".join(path), ctx.params


def test_the_extractors_find_every_command_line() -> None:
    where = [line.where for line in sources.command_lines()]
    assert where == [
        "compose service api",
        "compose service dashboard",
        "compose service worker",
        "Dockerfile RUN",
        "Dockerfile CMD",
        "worker-deployment.yaml worker",
        "systemd ExecStart",
    ]


@pytest.mark.parametrize("line", sources.command_lines(), ids=lambda line: line.where)
def test_every_command_line_is_one_the_cli_accepts(
    line: CommandLine, clean_env: pytest.MonkeyPatch
) -> None:
    try:
        path, params = resolve(line, clean_env)
    except click.exceptions.Exit as done:  # --help and --version print and exit, cleanly
        assert done.exit_code == 0
        assert line.argv in {("--help",), ("--version",)}
        return
    assert path in {"worker", "api", "dashboard"}
    if path == "worker":
        app = load_app(params["app_spec"])  # imports, and is a Conveyor app
        served = {q.partition(":")[0] for q in params["queues"].split(",")}
        assert {task.queue for task in app.tasks.values()} <= served, (
            "a queue of the app's tasks that no worker claims from"
        )
        assert params["metrics_port"] == 2112
    else:
        assert params["host"] == "0.0.0.0"


def test_a_typo_in_a_command_line_fails_to_resolve(clean_env: pytest.MonkeyPatch) -> None:
    [worker] = [c for c in sources.compose_commands() if c.where.endswith("worker")]
    typo = CommandLine("typo", (*worker.argv, "--concurency", "5"))
    with pytest.raises(click.NoSuchOption):
        resolve(typo, clean_env)
    with pytest.raises(AssertionError, match="no command 'wroker'"):
        resolve(CommandLine("typo", ("wroker", *worker.argv[1:])), clean_env)


def worker_stop_budget(monkeypatch: pytest.MonkeyPatch, line: CommandLine) -> float:
    """Seconds a worker may take to stop: its grace, then the flush of outcomes (bounded by
    the lease)."""
    _, params = resolve(line, monkeypatch)
    settings = Settings.from_env(
        **{k: params[k] for k in ("shutdown_grace", "lease_timeout") if params[k] is not None}
    )
    return settings.shutdown_grace + settings.lease_timeout


def test_every_worker_may_drain_before_it_is_killed(clean_env: pytest.MonkeyPatch) -> None:
    compose = sources.services()["worker"]
    [line] = [c for c in sources.compose_commands() if c.where.endswith("worker")]
    assert sources.stop_seconds(compose["stop_grace_period"]) > worker_stop_budget(clean_env, line)
    [line] = list(sources.kubernetes_commands())
    deployment = sources.load_yaml(sources.KUBERNETES / "worker-deployment.yaml")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > worker_stop_budget(clean_env, line)
    unit = dict(sources.systemd_unit()["Service"])
    [line] = list(sources.systemd_commands())
    assert sources.stop_seconds(unit["TimeoutStopSec"]) > worker_stop_budget(clean_env, line)
    assert (unit["Restart"], unit["KillSignal"]) == ("on-failure", "SIGTERM")


# -- the compose file ---------------------------------------------------------------------


def test_every_yaml_and_json_file_parses() -> None:
    paths = sorted(
        p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml", ".json"} and p.is_file()
    )
    assert len(paths) == 8
    for path in paths:
        loaded = json.loads(path.read_text()) if path.suffix == ".json" else sources.load_yaml(path)
        assert isinstance(loaded, dict), path


def test_the_compose_file_has_every_service_and_a_durable_redis() -> None:
    services = sources.services()
    assert set(services) == {"redis", "api", "dashboard", "worker", "prometheus", "grafana"}
    redis = services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] in {"always", "everysec"}
    assert options["--maxmemory-policy"] == "noeviction"
    [volume] = redis["volumes"]
    name, _, target = volume.partition(":")
    assert target == "/data"
    assert name in sources.load_yaml(sources.COMPOSE)["volumes"]  # named, not a bind mount


def test_the_worker_service_can_be_scaled() -> None:
    worker = sources.services()["worker"]
    assert "ports" not in worker, "a fixed host port makes --scale worker=N fail"
    assert "container_name" not in worker
    assert worker["expose"] == ["2112"]


def test_the_dashboard_and_api_require_tokens_whose_example_parses() -> None:
    for name in ("api", "dashboard"):
        tokens = sources.environment(sources.services()[name])["CONVEYOR_API_TOKENS"]
        # required: compose refuses to start without it, rather than serve an open dashboard
        assert re.fullmatch(r"\$\{CONVEYOR_API_TOKENS:\?[^}]+\}", tokens), tokens
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    grants = parse_tokens(example["CONVEYOR_API_TOKENS"])
    assert {g.scope for g in grants.values()} == {"read", "write"}
    assert all("REPLACE-ME" in token for token in grants)


def test_every_bind_mount_exists_and_each_conveyor_port_is_published() -> None:
    for name, service in sources.services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    for name, port in (("api", 8085), ("dashboard", 8082)):
        assert sources.services()[name]["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_prometheus_scrapes_the_ports_the_services_listen_on(
    clean_env: pytest.MonkeyPatch,
) -> None:
    lines = {c.where.split()[-1]: c for c in sources.compose_commands()}
    _, api = resolve(lines["api"], clean_env)
    _, worker = resolve(lines["worker"], clean_env)
    config = sources.load_yaml(DEPLOY / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["conveyor-api"]["static_configs"] == [{"targets": [f"api:{api['port']}"]}]
    [discovery] = jobs["conveyor-worker"]["dns_sd_configs"]
    assert discovery["names"] == ["worker"] and discovery["type"] == "A"
    assert discovery["port"] == worker["metrics_port"]
    mounts = dict(v.split(":")[:2] for v in sources.services()["prometheus"]["volumes"])
    assert [mounts[f"./{Path(f).name}"] for f in config["rule_files"]] == config["rule_files"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    grafana = sources.services()["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    [datasource] = sources.load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    prometheus = sources.services()["prometheus"]
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    assert datasource["url"] == "http://prometheus:9090"
    [provider] = sources.load_yaml(provisioning / "dashboards" / "conveyor.yml")["providers"]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    dashboard = json.loads(sources.DASHBOARD.read_text())
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    used |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert used == {datasource["uid"]}


# -- the Dockerfile and the Kubernetes manifests -------------------------------------------


def test_the_image_is_built_in_two_stages_and_runs_as_a_user() -> None:
    instructions = sources.dockerfile_instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert stages == ["python:3.11-slim AS build", "python:3.11-slim"]
    [user] = [rest for keyword, rest in instructions if keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert int(uid) > 0 and int(gid) > 0
    deployment = sources.load_yaml(sources.KUBERNETES / "worker-deployment.yaml")
    context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsNonRoot"], context["runAsUser"]) == (True, int(uid))
    # every file the build stage copies exists, and the ignore file lets it through
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for keyword, rest in instructions:
        if keyword == "COPY" and not rest.startswith("--from"):
            *copied, _ = rest.split()
            for each in copied:
                assert (ROOT / each).exists(), each
                assert each.rstrip("/") in allowed, f"{each} is not in the build context"


def test_keda_scales_the_worker_deployment_on_its_queues_lag(
    clean_env: pytest.MonkeyPatch,
) -> None:
    deployment = sources.load_yaml(sources.KUBERNETES / "worker-deployment.yaml")
    scaled = sources.load_yaml(sources.KUBERNETES / "keda-scaledobject.yaml")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [line] = list(sources.kubernetes_commands())
    _, params = resolve(line, clean_env)
    [query] = sources.keda_queries()
    [matcher] = sources.matchers(query)
    assert sources.metric_names(query) == {"conveyor_queue_lag_seconds"}
    assert (matcher.label, matcher.op) == ("queue", "=~")
    assert set(matcher.value.split("|")) == set(params["queues"].split(","))
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": params["metrics_port"]}]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


# -- PromQL against what is exported ---------------------------------------------------------


def test_the_promql_reader_is_exact() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, task) (rate(a_bucket{queue=~"x|y", '
        'state!="de,ad"}[5m]))) / on(queue) group_left b:rule or absent(c) '
        "and sum(d offset 1h) without (instance) > bool 2 unless e[$__rate_interval]"
    )
    assert sources.metric_names(expr) == {"a_bucket", "b:rule", "c", "d", "e"}
    assert [(m.metric, m.label, m.op, m.value) for m in sources.matchers(expr)] == [
        ("a_bucket", "queue", "=~", "x|y"),
        ("a_bucket", "state", "!=", "de,ad"),
    ]


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A `conveyor` subprocess with its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", *command], env=env, cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The compose file's API and worker, run by their own command lines on the test's
    Redis and loopback ports: (API base URL, worker metrics URL)."""
    lines = {c.where.split()[-1]: c for c in sources.compose_commands()}
    api_port, metrics_port = free_port(), free_port()
    # each with its service's variables, but the test's Redis, prefix and ports
    loopback = {"CONVEYOR_METRICS_PORT": str(metrics_port), "CONVEYOR_METRICS_HOST": "127.0.0.1"}
    worker_vars = {**dict(lines["worker"].env), **worker_env(settings), **loopback}
    worker = start(list(lines["worker"].argv), worker_vars, tmp_path / "worker.log")
    api_vars = {**dict(lines["api"].env), **worker_env(settings)}
    del api_vars["CONVEYOR_API_TOKENS"]  # a compose interpolation; an open API on loopback
    api_argv = [*lines["api"].argv, "--host", "127.0.0.1", "--port", str(api_port)]
    api = start(api_argv, api_vars, tmp_path / "api.log")
    try:
        yield f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        for process in (worker, api):
            process.send_signal(signal.SIGTERM)
        codes = []
        for process in (worker, api):
            try:
                codes.append(process.wait(15))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
    # SIGTERM, as `docker compose stop` sends it, stops both cleanly
    assert codes == [0, 0], (tmp_path / "worker.log").read_text()


async def reachable(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url)).status_code == 200
    except httpx.TransportError:
        return False


DEMO = "conveyor.tools.demo_tasks"


async def scraped(stack: tuple[str, str]) -> Samples:
    """Run the demo's tasks through the real API and worker (some succeed, one retries
    twice, one dies), then every sample of the API's and the worker's /metrics."""
    api, worker_metrics = stack
    async with httpx.AsyncClient(base_url=api, trust_env=False, timeout=5) as http:
        await wait_until(lambda: reachable(http, "/readyz"), 15, "the API to serve")
        ok = [
            await enqueue(http, f"{DEMO}.resize_image", args=["a.png", 100]),
            await enqueue(
                http,
                f"{DEMO}.send_welcome_email",
                queue="emails",
                kwargs={"to": "a@b.c", "name": "A"},
            ),
            await enqueue(http, f"{DEMO}.flaky_webhook", args=["https://example.invalid"]),
        ]
        dead = [await enqueue(http, f"{DEMO}.poison", args=[1])]
        await wait_for_state(http, ok, "succeeded", 15)
        await wait_for_state(http, dead, "dead", 15)
        await wait_until(lambda: reachable(http, worker_metrics), 10, "the worker's exporter")
        samples: Samples = {}
        for url in (worker_metrics, "/metrics"):
            response = await http.get(url)
            assert response.status_code == 200
            samples |= parse(response.text)[0]
    return samples


async def test_every_queried_metric_is_exported(stack: tuple[str, str]) -> None:
    samples = await scraped(stack)
    labels: dict[str, dict[str, set[str]]] = {}
    for name, sample_labels in samples:
        for label, value in sample_labels:
            labels.setdefault(name, {}).setdefault(label, set()).add(value)
    outcomes = labels["conveyor_tasks_processed_total"]["outcome"]
    assert {"succeeded", "retried", "dead"} <= outcomes  # the run did what it should
    queries = sources.all_queries()
    assert len(queries) >= 15
    for where, expr in queries.items():
        names = sources.metric_names(expr)
        assert names, where
        for name in names - SYNTHETIC:
            assert name in labels, f"{where}: {name} is not exported"
        for m in sources.matchers(expr):
            if m.metric in SYNTHETIC:
                continue
            assert m.label in labels[m.metric], f"{where}: {m.metric} has no label {m.label}"
            if m.op in {"=", "!="}:
                seen = labels[m.metric][m.label]
                assert m.value in seen, f"{where}: {m.label}={m.value!r} never seen in {seen}"
    for metric, label in sources.dashboard_variables():
        assert label in labels[metric]


def test_alert_rules_cover_dead_letters_lag_and_workers() -> None:
    rules = {rule["alert"]: rule for rule in sources.alert_rules()}
    used = {name: sources.metric_names(rule["expr"]) for name, rule in rules.items()}
    assert used["ConveyorDeadLettersGrowing"] == {"conveyor_queue_depth"}
    assert used["ConveyorQueueLagHigh"] == {"conveyor_queue_lag_seconds"}
    assert used["ConveyorNoWorkers"] == {"conveyor_workers", "conveyor_queue_depth"}
    assert used["ConveyorWorkersDown"] == {"up"}
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
    # the queue gauges are read by every exporter: summing them would count each N times
    summed = re.compile(r"\bsum(?:\s*by\s*\([^)]*\))?\s*\(\s*conveyor_(?:queue_|workers)")
    assert summed.search("sum by (queue) (conveyor_queue_depth)")
    for where, expr in sources.all_queries().items():
        assert not summed.search(expr), where
