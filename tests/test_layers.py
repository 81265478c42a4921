"""The layering holds: Redis is spoken only by the broker's operations and its transport,
and imports run one way, from the facade down to the model."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "conveyor"
#: The only modules that build Redis commands (the sans-IO operations) ...
OPERATIONS = {
    "broker/ops.py",
    "broker/admin.py",
    "broker/fsck.py",
    "broker/dead_letters.py",
    "broker/browse.py",
    "broker/audit.py",
    "broker/timeseries.py",
    "broker/flow_state.py",
    "broker/schedules.py",
    "broker/fsck_schedules.py",
    "broker/events.py",
    "broker/workflows.py",
}
#: ... and the only ones that send them, and import redis-py or hiredis (the standalone
#: transport and the Redis Cluster one) ...
TRANSPORT = "broker/transport.py"
#: ... with the one that builds its clients (packing commands for their connections).
CONNECTION = "broker/connection.py"
TRANSPORTS = {
    TRANSPORT,
    CONNECTION,
    "broker/cluster.py",
    "broker/cluster_async.py",
    "broker/cluster_routing.py",
}
#: What building or sending a Redis command looks like in Python.
COMMAND = re.compile(r"Call\.(command|script_call)\(|execute_command|\.pipeline\(|\bpack_command\(")

#: Each layer, by module prefix, and the layers it may import (besides itself).
LAYERS = {
    "model": ["errors", "names", "serializers", "backoff", "context", "settings", "ids",
              "model", "options", "flow", "logs", "timing", "schedule", "events",
              "traceparent", "redis_url", "shards"],
    "broker": ["broker"],
    "producer": ["producer", "task", "metrics", "middleware", "tracing", "canvas",
                 "workflow"],
    "facade": ["app", "schedules"],
    "edges": ["worker", "api", "dashboard", "cli", "tools", "__main__"],
}  # fmt: skip


def _modules() -> dict[str, Path]:
    return {str(p.relative_to(PACKAGE)): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """The conveyor modules and third-party packages a module imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _layer(module: str) -> int:
    """The rank of a `conveyor.x.y` module's layer: 0 is the bottom."""
    first = module.removeprefix("conveyor.").split(".")[0]
    for rank, members in enumerate(LAYERS.values()):
        if first in members:
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def test_the_operations_and_the_transport_are_found() -> None:
    modules = _modules()
    assert not (OPERATIONS | TRANSPORTS) - modules.keys()
    assert COMMAND.search(modules[TRANSPORT].read_text())


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_redis_command_outside_the_operations_and_the_transport(name: str) -> None:
    if name in OPERATIONS or name in TRANSPORTS:
        return
    text = _modules()[name].read_text()
    assert not COMMAND.findall(text), f"{name} builds or sends Redis commands"
    clients = {m for m in _imports(_modules()[name]) if m.split(".")[0] in {"redis", "hiredis"}}
    assert not clients, f"{name} imports {clients}: only the transport may"


@pytest.mark.parametrize("name", sorted(n for n in _modules() if n != "__init__.py"))
def test_imports_run_down_the_layers(name: str) -> None:
    path = _modules()[name]
    own = _layer("conveyor." + name.removesuffix(".py").replace("/", "."))
    for module in _imports(path):
        if module.startswith("conveyor.") and module != "conveyor":
            assert _layer(module) <= own, f"{name} (layer {own}) imports {module} from above"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_only_the_tracing_middleware_imports_opentelemetry(name: str) -> None:
    """OpenTelemetry is an extra (`conveyor-queue[otel]`): the core must run without it."""
    otel = {m for m in _imports(_modules()[name]) if m.split(".")[0] == "opentelemetry"}
    assert name == "tracing.py" or not otel, f"{name} imports {otel}"
