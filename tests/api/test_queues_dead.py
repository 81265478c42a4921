"""`/v1/queues`, `/v1/dead` and `/v1/workers`, against work done by a real worker."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from conveyor.ids import new_ulid
from tests.api.helpers import (
    assert_error,
    enqueue,
    fields_named,
    members,
    record,
    task_ids,
    wait_for_state,
)
from tests.support.keyspace import depths
from tests.support.worker import running_worker, wait_until

# -- queues ------------------------------------------------------------------------------


async def test_list_and_read_queues(client: httpx.AsyncClient, r: redis.Redis, prefix: str) -> None:
    assert (await client.get("/v1/queues")).json() == {"queues": []}
    for _ in range(2):
        await enqueue(client, "x", queue="alpha")
    await enqueue(client, "x", queue="beta", delay=60)
    response = await client.get("/v1/queues")
    assert response.status_code == 200
    queues = response.json()["queues"]
    assert [q["name"] for q in queues] == ["alpha", "beta"]
    for queue in queues:
        assert {s: queue[s] for s in depths(r, prefix, queue["name"])} == depths(
            r, prefix, queue["name"]
        )
        assert queue["paused"] is False
    alpha = await client.get("/v1/queues/alpha")
    assert alpha.status_code == 200
    assert alpha.json()["pending"] == 2 and alpha.json()["lag_seconds"] >= 0
    assert {k: v for k, v in alpha.json().items() if k != "lag_seconds"} == {
        "name": "alpha",
        "pending": 2,
        "active": 0,
        "scheduled": 0,
        "retrying": 0,
        "dead": 0,
        "paused": False,
    }
    beta = (await client.get("/v1/queues/beta")).json()
    assert (beta["pending"], beta["scheduled"], beta["lag_seconds"]) == (0, 1, 0)


async def test_a_never_used_queue_is_404(client: httpx.AsyncClient) -> None:
    await enqueue(client, "x", queue="alpha")
    assert_error(await client.get("/v1/queues/never-used"), 404, "not_found")


@pytest.mark.parametrize("bad", ["a:b", "a%7Bb", "a%7D", "ok%0A", "x" * 65, "a%20b"])
async def test_an_invalid_queue_name_in_the_path_is_422(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str, bad: str
) -> None:
    for response in (
        await client.get(f"/v1/queues/{bad}"),
        await client.post(f"/v1/queues/{bad}/pause"),
        await client.post(f"/v1/queues/{bad}/resume"),
    ):
        assert fields_named(assert_error(response, 422, "invalid_request")) == ["name"]
    assert task_ids(r, prefix) == set()
    assert list(r.scan_iter(match=f"{prefix}:*")) == []


async def test_a_paused_queue_is_not_claimed_until_resumed(
    client: httpx.AsyncClient, aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    @aapp.task(name="work")
    def work(x: int) -> int:
        return x + 1

    paused_key = GlobalKeys(prefix).queue("jobs").paused
    response = await client.post("/v1/queues/jobs/pause")
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["paused"]) == ("jobs", True)
    assert r.exists(paused_key) == 1
    # a queue paused before its first task is listed, so it can be resumed
    assert (await client.get("/v1/queues/jobs")).json()["paused"] is True

    # strict order: every claim round tries "jobs" before "control"
    async with running_worker(aapp, "jobs,control"):
        jobs = [await enqueue(client, "work", queue="jobs", payload=i) for i in range(3)]
        for i in range(2):
            control = await enqueue(client, "work", queue="control", payload=i)
            await wait_for_state(client, [control], "succeeded")
        for task_id in jobs:
            stored = await record(client, task_id)
            assert (stored["state"], stored["attempts"]) == ("pending", 0)
        assert depths(r, prefix, "jobs")["pending"] == 3
        assert (await client.get("/v1/queues/jobs")).json()["pending"] == 3

        resumed = await client.post("/v1/queues/jobs/resume")
        assert resumed.status_code == 200
        assert (resumed.json()["paused"], resumed.json()["pending"]) == (False, 3)
        assert r.exists(paused_key) == 0
        await wait_for_state(client, jobs, "succeeded")
    assert [(await record(client, i))["result"] for i in jobs] == [1, 2, 3]


# -- dead letters ------------------------------------------------------------------------


@dataclass
class Dead:
    """Dead letters made by a real worker: `fails` raised, `ghost` had no handler."""

    alpha_fails: list[str]
    beta_fails: list[str]
    ghosts: list[str]

    @property
    def all(self) -> list[str]:
        return self.alpha_fails + self.beta_fails + self.ghosts


async def make_dead(client: httpx.AsyncClient, aapp: Conveyor) -> Dead:
    """Three `fails` in alpha, one in beta, two unknown `ghost` tasks in beta: all dead."""

    @aapp.task(name="fails", max_retries=0)
    def fails(n: int) -> None:
        raise ValueError(f"broken input {n}")

    dead = Dead(
        [await enqueue(client, "fails", queue="alpha", payload=i) for i in range(3)],
        [await enqueue(client, "fails", queue="beta", payload=3)],
        [await enqueue(client, "ghost", queue="beta", payload=i) for i in range(2)],
    )
    async with running_worker(aapp, "alpha,beta"):
        await wait_for_state(client, dead.all, "dead")
    return dead


def dead_ids(r: redis.Redis, prefix: str) -> set[str]:
    """Every id in the dead-letter sets of alpha and beta."""
    return members(r, prefix, "alpha", "dead") | members(r, prefix, "beta", "dead")


async def test_list_dead_letters_paginated_and_filtered(
    client: httpx.AsyncClient, aapp: Conveyor
) -> None:
    dead = await make_dead(client, aapp)
    await enqueue(client, "fails", queue="alpha")  # pending: never listed
    pages = []
    for offset in (0, 4, 8):
        response = await client.get("/v1/dead", params={"offset": offset, "limit": 4})
        assert response.status_code == 200
        page = response.json()
        assert (page["total"], page["offset"], page["limit"]) == (6, offset, 4)
        pages.append([item["id"] for item in page["items"]])
    assert [len(p) for p in pages] == [4, 2, 0]
    listed = pages[0] + pages[1]
    assert sorted(listed) == sorted(dead.all)
    everything = (await client.get("/v1/dead")).json()
    assert [i["id"] for i in everything["items"]] == listed  # pages are slices of one order
    deaths = [datetime.fromisoformat(i["finished_at"]) for i in everything["items"]]
    assert deaths == sorted(deaths, reverse=True)  # newest first
    assert all(i["state"] == "dead" for i in everything["items"])

    async def filtered(**params: str | int) -> tuple[int, list[str]]:
        response = await client.get("/v1/dead", params=params)
        assert response.status_code == 200, response.text
        return response.json()["total"], sorted(i["id"] for i in response.json()["items"])

    assert await filtered(task="ghost") == (2, sorted(dead.ghosts))
    assert await filtered(task="fails") == (4, sorted(dead.alpha_fails + dead.beta_fails))
    assert await filtered(queue="alpha") == (3, sorted(dead.alpha_fails))
    assert await filtered(queue="beta", task="fails") == (1, dead.beta_fails)
    first, second = await filtered(task="fails", limit=2), await filtered(task="fails", offset=2)
    assert (first[0], second[0]) == (4, 4)
    assert sorted(first[1] + second[1]) == sorted(dead.alpha_fails + dead.beta_fails)
    assert await filtered(task="nobody") == (0, [])
    assert await filtered(queue="gamma") == (0, [])
    for params in ({"limit": 0}, {"offset": -1}, {"queue": "a:b"}, {"task": "a b"}):
        bad = await client.get("/v1/dead", params=params)
        assert fields_named(assert_error(bad, 422, "invalid_request")) == list(params)


async def test_show_a_dead_letter_with_its_traceback(
    client: httpx.AsyncClient, aapp: Conveyor
) -> None:
    dead = await make_dead(client, aapp)
    response = await client.get(f"/v1/dead/{dead.alpha_fails[1]}")
    assert response.status_code == 200
    letter = response.json()
    assert (letter["id"], letter["state"], letter["reason"]) == (
        dead.alpha_fails[1],
        "dead",
        "error",
    )
    assert (letter["name"], letter["queue"], letter["args"], letter["attempts"]) == (
        "fails",
        "alpha",
        [1],
        1,
    )
    assert letter["error"]["type"] == "ValueError"
    assert letter["error"]["message"] == "broken input 1"
    assert 'raise ValueError(f"broken input {n}")' in letter["error"]["traceback"]
    ghost = (await client.get(f"/v1/dead/{dead.ghosts[0]}")).json()
    assert (ghost["reason"], ghost["name"]) == ("unknown task", "ghost")
    assert "ghost" in ghost["error"]["message"]

    pending = await enqueue(client, "fails", queue="alpha")
    for task_id in (pending, f"alpha:{new_ulid()}", "garbage", "alpha:"):
        assert_error(await client.get(f"/v1/dead/{task_id}"), 404, "not_found")
        assert_error(await client.post(f"/v1/dead/{task_id}/retry"), 404, "not_found")
        assert_error(await client.delete(f"/v1/dead/{task_id}"), 404, "not_found")
    assert (await record(client, pending))["state"] == "pending"  # untouched by any of it


async def test_retry_one_dead_letter(
    client: httpx.AsyncClient, aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    dead = await make_dead(client, aapp)
    chosen = dead.alpha_fails[0]
    response = await client.post(f"/v1/dead/{chosen}/retry")
    assert response.status_code == 200
    assert response.json() == {"requeued": 1}
    stored = await record(client, chosen)
    assert (stored["state"], stored["failures"], stored["reason"]) == ("pending", 0, None)
    assert members(r, prefix, "alpha", "pending") == {chosen}
    assert dead_ids(r, prefix) == set(dead.all) - {chosen}
    key = GlobalKeys(prefix).queue("alpha").task(chosen)
    assert r.ttl(key) == -1  # no longer expiring as a dead letter
    # once requeued it is not a dead letter any more
    assert_error(await client.post(f"/v1/dead/{chosen}/retry"), 404, "not_found")
    assert (await client.get("/v1/dead")).json()["total"] == 5


async def test_retry_dead_letters_filtered_then_all(
    client: httpx.AsyncClient, aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    dead = await make_dead(client, aapp)
    ghosts = await client.post("/v1/dead/retry", json={"task": "ghost"})
    assert (ghosts.status_code, ghosts.json()) == (200, {"requeued": 2})
    assert members(r, prefix, "beta", "pending") == set(dead.ghosts)
    assert dead_ids(r, prefix) == set(dead.alpha_fails + dead.beta_fails)

    # the replayed ghosts now have a handler: a worker runs them for real
    @aapp.task(name="ghost")
    def ghost(n: int) -> str:
        return f"boo {n}"

    async with running_worker(aapp, "beta"):
        await wait_for_state(client, dead.ghosts, "succeeded")
    assert [(await record(client, i))["result"] for i in dead.ghosts] == ["boo 0", "boo 1"]

    nothing = await client.post("/v1/dead/retry", json={"queue": "beta", "task": "ghost"})
    assert nothing.json() == {"requeued": 0}
    alpha = await client.post("/v1/dead/retry", json={"queue": "alpha"})
    assert alpha.json() == {"requeued": 3}
    assert members(r, prefix, "alpha", "pending") == set(dead.alpha_fails)
    rest = await client.post("/v1/dead/retry", json={})
    assert rest.json() == {"requeued": 1}
    assert dead_ids(r, prefix) == set()
    assert members(r, prefix, "beta", "pending") == set(dead.beta_fails)
    bad = await client.post("/v1/dead/retry", json={"queue": "a}b"})
    assert fields_named(assert_error(bad, 422, "invalid_request")) == ["queue"]


async def test_delete_one_dead_letter_then_purge(
    client: httpx.AsyncClient, aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    dead = await make_dead(client, aapp)
    survivor = await enqueue(client, "fails", queue="alpha")
    gone = dead.beta_fails[0]
    response = await client.delete(f"/v1/dead/{gone}")
    assert (response.status_code, response.json()) == (200, {"deleted": 1})
    assert_error(await client.get(f"/v1/tasks/{gone}"), 404, "not_found")
    assert gone not in task_ids(r, prefix) | dead_ids(r, prefix)

    in_alpha = len(members(r, prefix, "alpha", "dead"))
    purged = await client.delete("/v1/dead", params={"queue": "alpha"})
    assert purged.json() == {"deleted": in_alpha} == {"deleted": 3}
    assert members(r, prefix, "alpha", "dead") == set()
    assert dead_ids(r, prefix) == set(dead.ghosts)

    left = len(dead_ids(r, prefix))
    everything = await client.delete("/v1/dead")
    assert (everything.status_code, everything.json()) == (200, {"deleted": left})
    assert dead_ids(r, prefix) == set()
    assert task_ids(r, prefix) == {survivor}  # records went with their dead letters
    assert (await client.get("/v1/dead")).json()["total"] == 0
    assert (await client.delete("/v1/dead")).json() == {"deleted": 0}


# -- workers -----------------------------------------------------------------------------


async def test_workers_lists_a_running_worker(
    client: httpx.AsyncClient, aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    assert (await client.get("/v1/workers")).json() == {"workers": []}
    async with running_worker(aapp, "alpha,beta", concurrency=7) as worker:

        async def listed() -> bool:
            return bool((await client.get("/v1/workers")).json()["workers"])

        await wait_until(listed, 10, "the worker to register")
        [info] = (await client.get("/v1/workers")).json()["workers"]
        assert info["id"] == worker.id
        assert (info["queues"], info["concurrency"]) == (["alpha", "beta"], 7)
        assert (info["pid"], info["host"]) == (os.getpid(), socket.gethostname())
        assert r.zscore(GlobalKeys(prefix).workers, worker.id) is not None
    # a stopped worker deregisters
    assert (await client.get("/v1/workers")).json() == {"workers": []}
