"""`GET /metrics`: this process's counters and histograms after real work, and the queue
gauges, in one exposition (the metrics themselves are tested in tests/test_metrics.py)."""

from __future__ import annotations

import httpx

from conveyor import Conveyor
from tests.api.helpers import enqueue, wait_for_state
from tests.support import metrics
from tests.support.worker import running_worker


async def scrape(client: httpx.AsyncClient) -> tuple[metrics.Samples, dict[str, str]]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return metrics.parse(response.text)


COUNTED = {  # (task, outcome) -> processed; attempts per task follow from it
    ("ok", "succeeded"): 3,
    ("flaky", "retried"): 1,
    ("flaky", "succeeded"): 1,
    ("boom", "dead"): 1,
    ("soft", "failed"): 1,
}
ATTEMPTS = {"ok": 3, "flaky": 2, "boom": 1, "soft": 1}
OUTCOMES = ("succeeded", "failed", "retried", "dead")


def expected_increments(queue: str, seed_type: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample, labels, increment) for the work of the test below."""
    enqueued = {"ok": 3, "flaky": 1, "boom": 1, "soft": 1}
    attempts = sum(ATTEMPTS.values())  # every attempt waited, and ran
    rows: list[tuple[str, dict[str, str], float]] = [
        ("conveyor_tasks_enqueued_total", {"queue": "default", "task": seed_type}, 1),
        ("conveyor_task_wait_seconds_count", {"queue": queue}, attempts),
        ("conveyor_task_wait_seconds_bucket", {"queue": queue, "le": "+Inf"}, attempts),
    ]
    for task, tries in ATTEMPTS.items():
        on = {"queue": queue, "task": task}
        rows += [
            ("conveyor_tasks_enqueued_total", on, enqueued[task]),
            ("conveyor_task_duration_seconds_count", on, tries),
            ("conveyor_task_duration_seconds_bucket", {**on, "le": "+Inf"}, tries),
        ]
        rows += [
            ("conveyor_tasks_processed_total", {**on, "outcome": o}, COUNTED.get((task, o), 0))
            for o in OUTCOMES
        ]
    return rows


async def test_counters_and_histograms_after_real_work(
    client: httpx.AsyncClient, aapp: Conveyor, prefix: str
) -> None:
    metrics.register(aapp)
    queue = metrics.own_queue(prefix)
    seed_type = f"seed-{prefix}"
    expected = expected_increments(queue, seed_type)
    in_registry = [metrics.registry_value(name, **values) for name, values, _ in expected]
    before, _ = await scrape(client)

    ids = [await enqueue(client, "ok", queue=queue, payload=i) for i in range(2)]
    for _ in range(2):  # the replay of an idempotency key enqueues nothing
        ids.append(await enqueue(client, "ok", queue=queue, payload=2, idempotency_key="k"))
    ids.append(await enqueue(client, "flaky", queue=queue))
    batch = {"tasks": [{"name": "boom", "queue": queue}, {"name": "soft", "queue": queue}]}
    response = await client.post("/v1/tasks/batch", json=batch)
    ids += [t["id"] for t in response.json()["tasks"]]
    assert (await client.post("/task", json={"type": seed_type})).status_code == 202
    async with running_worker(aapp, queue):
        await wait_for_state(client, ids[:5], "succeeded")
        await wait_for_state(client, ids[5:6], "dead")
        await wait_for_state(client, ids[6:], "failed")
    after, families = await scrape(client)

    # every family, the queue gauges included, and no other (a worker's exporter, tested in
    # tests/test_metrics.py, exposes the very same)
    assert metrics.conveyor_families(families) == metrics.EXPOSED
    scraped, counted = {}, {}
    for (name, values, _), was in zip(expected, in_registry, strict=True):
        key = (name, metrics.labels(**values))
        scraped[key] = after.get(key, 0.0) - before.get(key, 0.0)
        counted[key] = metrics.registry_value(name, **values) - was
    wanted = {(name, metrics.labels(**values)): n for name, values, n in expected}
    assert scraped == wanted
    assert counted == wanted
