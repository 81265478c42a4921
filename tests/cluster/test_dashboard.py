"""The dashboard on a real Cluster, over real HTTP (uvicorn on a loopback port): its pages,
JSON and live streams read queues spread over the three masters, and its cancel stops a
task running on a Cluster worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from conveyor import Conveyor, TaskState
from conveyor.settings import Settings
from tests.dashboard.conftest import serving
from tests.support.cluster import LocalCluster, spread_queues
from tests.support.worker import running_worker, wait_all, wait_until

pytestmark = pytest.mark.slow


class Events:
    """The events of one server-sent event stream, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        """The data of the next `event` the stream sends."""

        async def read() -> dict[str, Any]:
            name = ""
            async for line in self.lines:
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: ") and name == event:
                    found: dict[str, Any] = orjson.loads(line.removeprefix("data: "))
                    return found
            raise AssertionError(f"the stream ended before a {event} event")

        return await asyncio.wait_for(read(), timeout)


@pytest.fixture
async def page(cluster_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    with serving(cluster_settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            yield client


async def test_every_page_and_stream_reads_queues_of_every_master(
    cluster: LocalCluster, cluster_settings: Settings, page: httpx.AsyncClient
) -> None:
    queues = spread_queues(cluster, cluster_settings.prefix)
    app = Conveyor(settings=cluster_settings)
    release = asyncio.Event()

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="bad", max_retries=0)
    def bad() -> None:
        raise ValueError("broken")

    @app.task(name="gate")
    async def gate() -> str:
        await release.wait()
        return "open"

    try:
        done = [await app.enqueue_async("add", 1, i, queue=q) for i, q in enumerate(queues)]
        dead = [await app.enqueue_async("bad", queue=q) for q in queues]
        waiting = await app.enqueue_async("gate", queue=queues[2])
        async with running_worker(app, ",".join(queues), concurrency=4):
            await wait_all(done, TaskState.SUCCEEDED)
            await wait_all(dead, TaskState.DEAD)
            await wait_all([waiting], TaskState.ACTIVE)
            overview = (await page.get("api/overview")).json()
            rows = {row["name"]: row for row in overview["queues"]}
            assert {q: (rows[q]["dead"], rows[q]["pending"]) for q in queues} == dict.fromkeys(
                queues, (1, 0)
            )
            assert rows[queues[2]]["active"] == 1
            assert overview["workers"] == {"alive": 1, "lost": 0}
            workers = (await page.get("api/workers")).json()["workers"]
            assert [sorted(w["queues"]) for w in workers] == [sorted(queues)]
            for queue, task in zip(queues, dead, strict=True):
                listed = (await page.get(f"api/queues/{queue}?state=dead")).json()
                assert [t["id"] for t in listed["items"]] == [task.id]
            shown = (await page.get(f"api/tasks/{done[1].id}")).json()
            assert (shown["task"]["state"], shown["task"]["result"]) == ("succeeded", 2)
            assert (await page.get("api/dead")).json()["total"] == 3
            assert (await page.get(f"api/dead?queue={queues[0]}")).json()["total"] == 1
            assert (await page.get(f"queues/{queues[1]}")).status_code == 200  # the shell
            async with page.stream("GET", f"api/tasks/{waiting.id}/events") as stream:
                reading = asyncio.ensure_future(Events(stream).next("change"))
                await asyncio.sleep(0.3)  # the stream is reading from the queue's node
                release.set()
                change = await reading
            assert (change["task_id"], change["event"]) == (waiting.id, "succeeded")
        # the worker wrote its counts as it stopped: the live snapshots chart all four once
        # their bucket is shown (SHOWN_AFTER seconds after it starts)
        async with page.stream("GET", "api/events") as stream:
            snapshots = Events(stream)
            while True:
                snapshot = await snapshots.next("snapshot")
                assert snapshot["redis"] == "up"
                points = snapshot["history"]["points"]
                if sum(p["succeeded"] * p["seconds"] for p in points) == pytest.approx(4):
                    break
        # actions over queues of every master: one call each, audited
        paused = await page.post(f"api/queues/{queues[1]}/pause", json={})
        assert paused.status_code == 200 and paused.json()["paused"] is True
        ids = [task.id for task in dead]
        requeued = await page.post("api/dead/retry", json={"ids": ids})
        assert requeued.json() == {"requeued": 3}
        rows = {row["name"]: row for row in (await page.get("api/overview")).json()["queues"]}
        assert [(rows[q]["pending"], rows[q]["dead"]) for q in queues] == [(1, 0)] * 3
        audit = (await page.get("api/audit")).json()
        assert audit["total"] >= 2, audit
    finally:
        release.set()
        await app.aclose()
        app.close()


async def test_the_dashboard_cancels_a_task_running_on_a_cluster_worker(
    cluster: LocalCluster, cluster_settings: Settings, page: httpx.AsyncClient
) -> None:
    # beats every 10 s: a stop within a couple of seconds is the cancel message's doing
    settings = cluster_settings.replace(lease_timeout=30.0)
    app = Conveyor(settings=settings)
    stopped: list[str] = []

    @app.task(name="sleeper")
    async def sleeper(queue: str) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append(queue)
            raise

    queues = spread_queues(cluster, settings.prefix)
    try:
        handles = [await app.enqueue_async("sleeper", q, queue=q) for q in queues]
        async with running_worker(app, ",".join(queues), concurrency=4):
            await wait_all(handles, TaskState.ACTIVE)
            started = time.monotonic()
            response = await page.post(f"api/tasks/{handles[0].id}/cancel", json={})
            assert response.status_code == 200, response.text
            for handle in handles[1:]:
                assert await app.async_inspector().cancel(handle.id) is TaskState.CANCELLING
            await wait_all(handles, TaskState.CANCELLED, timeout=5)
            took = time.monotonic() - started
            assert took < 3.0, f"cancelled after {took:.2f}s: by the heartbeat, not the message"

            async def all_stopped() -> bool:
                return sorted(stopped) == sorted(queues)

            await wait_until(all_stopped, 5, "every handler to be stopped")
    finally:
        await app.aclose()
        app.close()
