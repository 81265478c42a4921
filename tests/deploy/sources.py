"""Reading the deployment files of deploy/: the compose file, the `conveyor` command lines of
every file, and the metric names and selectors of every PromQL expression."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd" / "conveyor-worker.service"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "conveyor.json"
#: The image the compose file builds and the Kubernetes manifests run.
IMAGE_NAMES = ("conveyor:",)


def load_yaml(path: Path) -> Any:
    """Every document of a YAML file (one for most, a list when there are several)."""
    documents = list(yaml.safe_load_all(path.read_text()))
    return documents[0] if len(documents) == 1 else documents


def services() -> dict[str, dict[str, Any]]:
    """The compose file's services, YAML merge keys resolved."""
    found: dict[str, dict[str, Any]] = load_yaml(COMPOSE)["services"]
    return found


def runs_conveyor(image: str | None) -> bool:
    """True for Conveyor's own image, whose entrypoint is `conveyor`."""
    return image is not None and image.startswith(IMAGE_NAMES)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment, as a mapping whatever form the file uses."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def stop_seconds(text: str) -> float:
    """A compose or systemd duration ("60s", "1m30s", "90") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|min|s|m|h)?", text.replace(" ", ""))
    assert "".join(n + u for n, u in parts) == text.replace(" ", ""), text
    return sum(float(n) * units[u or "s"] for n, u in parts)


@dataclass(frozen=True)
class CommandLine:
    """The arguments of one `conveyor` invocation, where it was found, and the
    environment it runs with there."""

    where: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


def compose_commands() -> Iterator[CommandLine]:
    """The command of each compose service that runs Conveyor's image."""
    for name, service in services().items():
        if runs_conveyor(service.get("image")):
            command = service["command"]
            argv = shlex.split(command) if isinstance(command, str) else command
            env = tuple(environment(service).items())
            yield CommandLine(f"compose service {name}", tuple(map(str, argv)), env)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def dockerfile_commands() -> Iterator[CommandLine]:
    """ENTRYPOINT + CMD, and every `conveyor ...` a RUN step calls."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif keyword == "CMD":
            cmd = json.loads(rest)
        elif keyword == "RUN":
            for step in re.split(r"&&|;", rest):
                words = shlex.split(step)
                if words and words[0] == "conveyor":
                    yield CommandLine("Dockerfile RUN", tuple(words[1:]))
    assert entrypoint == ["conveyor"], entrypoint
    yield CommandLine("Dockerfile CMD", tuple(cmd))


def kubernetes_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    """(manifest file name, container) for every container of every manifest."""
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            spec = document.get("spec", {}).get("template", {}).get("spec", {})
            for container in spec.get("containers", []):
                yield path.name, container


def kubernetes_commands() -> Iterator[CommandLine]:
    """The args of every container running Conveyor's image (its entrypoint stays)."""
    for name, container in kubernetes_containers():
        if runs_conveyor(container.get("image")):
            assert "command" not in container, f"{name}: the entrypoint is conveyor"
            env = tuple((e["name"], e["value"]) for e in container.get("env", []) if "value" in e)
            yield CommandLine(f"{name} {container['name']}", tuple(container["args"]), env)


def systemd_unit() -> dict[str, list[tuple[str, str]]]:
    """Each section of the unit, its (key, value) lines in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in SYSTEMD.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key, value))
    return sections


def systemd_commands() -> Iterator[CommandLine]:
    """ExecStart's `conveyor` arguments, with the unit's Environment= variables."""
    service = systemd_unit()["Service"]
    env: list[tuple[str, str]] = []
    for key, value in service:
        if key == "Environment":
            env += [(n, v) for n, _, v in (item.partition("=") for item in shlex.split(value))]
    for key, value in service:
        if key == "ExecStart":
            program, *argv = shlex.split(value)
            assert program.endswith("/conveyor"), value
            yield CommandLine("systemd ExecStart", tuple(argv), tuple(env))


def command_lines() -> list[CommandLine]:
    """Every `conveyor` command line of deploy/."""
    return [
        *compose_commands(),
        *dockerfile_commands(),
        *kubernetes_commands(),
        *systemd_commands(),
    ]


# -- PromQL ------------------------------------------------------------------------------

#: PromQL words that look like identifiers but name no series.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
_STRING = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|`[^`]*`")
_MODIFIER = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_SELECTOR = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*(\"(?:\\.|[^\"\\])*\")\s*")


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: identifiers that are not functions,
    keywords, label names (in matchers or by/on lists), durations or Grafana variables."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _MODIFIER.sub(" ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    return {n for n in _NAME.findall(text) if n.lower() not in _KEYWORDS}


@dataclass(frozen=True)
class Matcher:
    """One label matcher of a selector: `state="dead"`."""

    metric: str
    label: str
    op: str
    value: str


def matchers(expr: str) -> list[Matcher]:
    """Every label matcher of every `name{...}` selector of an expression."""
    found = []
    for metric, body in _SELECTOR.findall(expr):
        for item in _split_matchers(body):
            match = _MATCHER.fullmatch(item)
            assert match, f"cannot read the matcher {item!r} of {expr!r}"
            label, op, quoted = match.groups()
            found.append(Matcher(metric, label, op, json.loads(quoted)))
    return found


def _split_matchers(body: str) -> list[str]:
    """A selector's matchers, split on the commas outside quoted values."""
    parts = re.findall(r"(?:\"(?:\\.|[^\"\\])*\"|[^,\"])+", body)
    return [p for p in parts if p.strip()]


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard (its panels' targets)."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def dashboard_variables() -> list[tuple[str, str]]:
    """(metric, label) of each `label_values(metric, label)` variable of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)", text)
        assert match, f"variable {variable['name']}: {text!r}"
        found.append((match[1], match[2]))
    return found


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of deploy/alerts.yml."""
    groups = load_yaml(DEPLOY / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def keda_queries() -> list[str]:
    """The PromQL of every prometheus trigger of the KEDA ScaledObject."""
    scaled = load_yaml(KUBERNETES / "keda-scaledobject.yaml")
    return [t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]


def all_queries() -> dict[str, str]:
    """Every PromQL expression of deploy/, keyed by where it is."""
    found = {f"dashboard: {q}": q for q in dashboard_queries()}
    found |= {f"alert {r['alert']}: {r['expr']}": r["expr"] for r in alert_rules()}
    found |= {f"KEDA: {q}": q for q in keda_queries()}
    return found
