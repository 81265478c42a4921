"""`GET /metrics` after real work, and a worker's own exporter.

Counters and histograms are process-global (prometheus_client's default registry), so each
test works on a queue named after its own prefix and asserts on differences.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import pytest
import redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor, Retry, TaskContext
from conveyor.broker.keys import PRIORITY_BAND, GlobalKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port
from tests.api.helpers import DEPTHS, depths, enqueue, wait_for_state
from tests.support.worker import running_worker, wait_until

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


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


def labels(**values: str) -> Labels:
    return frozenset(values.items())


def registry_value(name: str, **values: str) -> float:
    """The process-wide value of a sample now (0 if it was never set)."""
    return REGISTRY.get_sample_value(name, values) or 0.0


async def scrape(client: httpx.AsyncClient) -> tuple[Samples, dict[str, str]]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
def queue(prefix: str) -> str:
    """A queue name no other test uses, so process-wide counters of it start at zero."""
    return f"m-{prefix}"


@pytest.fixture
def long_lease(settings: Settings) -> Iterator[SyncBroker]:
    """A broker whose claims hold their lease for a minute (no recoverer takes them back)."""
    broker = SyncBroker(settings.replace(lease_timeout=60))
    yield broker
    broker.close()


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


COUNTED = {  # (task, outcome) -> processed; attempts per task follow from it
    ("ok", "succeeded"): 3,
    ("flaky", "retried"): 1,
    ("flaky", "succeeded"): 1,
    ("boom", "dead"): 1,
    ("soft", "failed"): 1,
}
ATTEMPTS = {"ok": 3, "flaky": 2, "boom": 1, "soft": 1}
OUTCOMES = ("succeeded", "failed", "retried", "dead")
#: The families the issue asks for, with their types (a counter's family drops `_total`).
FAMILIES = {
    "conveyor_tasks_enqueued": "counter",
    "conveyor_tasks_processed": "counter",
    "conveyor_task_duration_seconds": "histogram",
    "conveyor_task_wait_seconds": "histogram",
    "conveyor_queue_depth": "gauge",
    "conveyor_queue_lag_seconds": "gauge",
    "conveyor_workers": "gauge",
}


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
    client: httpx.AsyncClient, aapp: Conveyor, queue: str, prefix: str
) -> None:
    register(aapp)
    seed_type = f"seed-{prefix}"
    expected = expected_increments(queue, seed_type)
    in_registry = [registry_value(name, **values) for name, values, _ in expected]
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

    assert {name: families.get(name) for name in FAMILIES} == FAMILIES
    scraped, counted = {}, {}
    for (name, values, _), was in zip(expected, in_registry, strict=True):
        key = (name, labels(**values))
        scraped[key] = after.get(key, 0.0) - before.get(key, 0.0)
        counted[key] = registry_value(name, **values) - was
    wanted = {(name, labels(**values)): n for name, values, n in expected}
    assert scraped == wanted
    assert counted == wanted


async def test_queue_gauges_match_the_keyspace(
    client: httpx.AsyncClient,
    aapp: Conveyor,
    long_lease: SyncBroker,
    r: redis.Redis,
    prefix: str,
    queue: str,
) -> None:
    register(aapp)
    boom = await enqueue(client, "boom", queue=queue)
    async with running_worker(aapp, queue):
        await wait_for_state(client, [boom], "dead")
    pending = [await enqueue(client, "ok", queue=queue, payload=i) for i in range(3)]
    [claimed] = long_lease.run(long_lease.ops.claim(queue, 1, "test-claimer")).tasks
    assert claimed.id == pending[0]
    assert (await client.post(f"/v1/queues/{queue}/pause")).status_code == 200
    await enqueue(client, "ok", queue=queue, payload=9, delay=60)
    await enqueue(client, "ok", queue="other", payload=1)
    assert depths(r, prefix, queue) == {"pending": 2, "active": 1, "scheduled": 1, "dead": 1}

    async with running_worker(aapp, queue):  # alive, but claims nothing from a paused queue

        async def registered() -> bool:
            return (await scrape(client))[0].get(("conveyor_workers", labels(queue=queue))) == 1

        await wait_until(registered, 10, "the worker to show in conveyor_workers")
        head_score = r.zrange(GlobalKeys(prefix).queue(queue).pending, 0, 0, withscores=True)[0][1]
        head_ms = int(head_score) - 100 * PRIORITY_BAND
        earliest = (redis_ms(r) - head_ms) / 1000
        samples, _ = await scrape(client)
        latest = (redis_ms(r) - head_ms) / 1000

    for name in (queue, "other"):
        exposed = {
            s: samples[("conveyor_queue_depth", labels(queue=name, state=s))] for s in DEPTHS
        }
        assert exposed == depths(r, prefix, name)
    assert samples[("conveyor_workers", labels(queue=queue))] == 1
    assert samples[("conveyor_workers", labels(queue="other"))] == 0
    lag = samples[("conveyor_queue_lag_seconds", labels(queue=queue))]
    assert earliest - 0.001 <= lag <= latest + 0.001
    assert lag > 0
    depth_queues = {dict(key[1])["queue"] for key in samples if key[0] == "conveyor_queue_depth"}
    assert depth_queues == {queue, "other"}  # this deployment's queues, no one else's


async def test_a_workers_own_exporter(
    client: httpx.AsyncClient, aapp: Conveyor, r: redis.Redis, prefix: str, queue: str
) -> None:
    register(aapp)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    async with (
        httpx.AsyncClient(trust_env=False, timeout=5) as http,
        running_worker(aapp, queue, metrics_port=port, metrics_host="127.0.0.1"),
    ):
        handles = [await aapp.enqueue_async("ok", i, queue=queue) for i in range(2)]
        assert [await h.result_async(timeout=10) for h in handles] == [0, 1]

        async def registered() -> bool:
            try:
                text = (await http.get(url)).text
            except httpx.TransportError:  # not listening yet
                return False
            return parse(text)[0].get(("conveyor_workers", labels(queue=queue))) == 1

        await wait_until(registered, 10, "the exporter to show the worker")
        response = await http.get(url)
        assert response.status_code == 200
        samples, families = parse(response.text)
    _, api_families = await scrape(client)
    conveyor_families = {n: t for n, t in api_families.items() if n.startswith("conveyor_")}
    assert {n: t for n, t in families.items() if n.startswith("conveyor_")} == conveyor_families
    assert {name: families.get(name) for name in FAMILIES} == FAMILIES

    def value(name: str, **values: str) -> float:
        return samples[(name, labels(**values))]

    assert value("conveyor_tasks_processed_total", queue=queue, task="ok", outcome="succeeded") == 2
    assert value("conveyor_task_duration_seconds_count", queue=queue, task="ok") == 2
    assert value("conveyor_task_wait_seconds_count", queue=queue) == 2
    assert value("conveyor_tasks_enqueued_total", queue=queue, task="ok") == 2
    exposed = {s: value("conveyor_queue_depth", queue=queue, state=s) for s in DEPTHS}
    assert exposed == depths(r, prefix, queue) == dict.fromkeys(DEPTHS, 0)
    assert value("conveyor_queue_lag_seconds", queue=queue) == 0
    assert value("conveyor_workers", queue=queue) == 1
    assert not math.isnan(value("conveyor_task_duration_seconds_sum", queue=queue, task="ok"))
    # a stopped worker stops serving
    async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url)
