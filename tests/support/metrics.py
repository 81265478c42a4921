"""Reading Prometheus expositions, and the tasks whose counts the metrics tests check.

Counters and histograms are process-global (prometheus_client's default registry), so each
test works on a queue named after its own prefix and asserts on differences.
"""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor, Retry, TaskContext

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]

#: Every family Conveyor exposes, with its type (a counter's family drops `_total`).
FAMILIES = {
    "conveyor_tasks_enqueued": "counter",
    "conveyor_tasks_processed": "counter",
    "conveyor_task_duration_seconds": "histogram",
    "conveyor_task_wait_seconds": "histogram",
    "conveyor_queue_depth": "gauge",
    "conveyor_queue_lag_seconds": "gauge",
    "conveyor_workers": "gauge",
}
#: What an exposition holds: the families, plus the `_created` sample of each counter and
#: histogram, which the text parser reads as a gauge family of its own.
EXPOSED = FAMILIES | {
    f"{name}_created": "gauge" for name, kind in FAMILIES.items() if kind != "gauge"
}


def own_queue(prefix: str) -> str:
    """A queue name no other test uses, so process-wide counters of it start at zero."""
    return f"m-{prefix}"


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Samples by (name, labels), and the type of each family, of a Prometheus exposition."""
    samples: Samples = {}
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} is exposed twice"
            samples[key] = sample.value
    return samples, families


def conveyor_families(families: dict[str, str]) -> dict[str, str]:
    """The families of an exposition that are Conveyor's own."""
    return {name: kind for name, kind in families.items() if name.startswith("conveyor_")}


def labels(**values: str) -> Labels:
    """A sample's labels, as `parse` keys them."""
    return frozenset(values.items())


def registry_value(name: str, **values: str) -> float:
    """The process-wide value of a sample now (0 if it was never set)."""
    return REGISTRY.get_sample_value(name, values) or 0.0


def register(app: Conveyor) -> None:
    """ok succeeds; flaky asks for a retry once; boom dies; soft fails without a dead letter."""

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x

    @app.task(name="flaky", max_retries=2)
    async def flaky(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            raise Retry(delay=0)
        return ctx.attempt

    @app.task(name="boom", max_retries=0)
    def boom() -> None:
        raise RuntimeError("boom")

    @app.task(name="soft", max_retries=0, dead_letter=False)
    def soft() -> None:
        raise RuntimeError("soft")
