"""The API on a Redis at maxmemory: every enqueue answers 503 `redis_full` with Retry-After
and stores nothing; reads still answer; enqueues are accepted again once Redis has room."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.broker.keys import GlobalKeys
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from tests.api.conftest import api_client
from tests.api.helpers import assert_error, enqueue
from tests.support.full import Private, private_setup
from tests.support.keyspace import dump, entry


@pytest.fixture
def private(redis_server: RedisServer, settings: Settings) -> Iterator[Private]:
    """A server of this test alone, which the test makes full."""
    with private_setup(redis_server, settings) as made:
        yield made


async def test_an_enqueue_on_a_full_redis_is_503_redis_full_and_stores_nothing(
    private: Private,
) -> None:
    prefix = private.settings.prefix
    async with api_client(private.settings) as client:
        first = await enqueue(client, "x", payload=1)
        before = dump(private.r, prefix)
        private.memory.fill()
        answers = [
            await client.post("/task", json={"type": "x", "payload": 2}),
            await client.post("/v1/tasks", json={"name": "x", "payload": 3}),
            await client.post("/v1/tasks", json={"name": "x", "idempotency_key": "k"}),
            await client.post("/v1/tasks/batch", json={"tasks": [{"name": "x"}, {"name": "y"}]}),
        ]
        for answer in answers:
            error = assert_error(answer, 503, "redis_full")
            assert error["message"] == "Redis is full (maxmemory); nothing was stored"
            assert error["details"] == {"stored": []}
            assert answer.headers["Retry-After"] == "5"
        assert dump(private.r, prefix) == before
        # reads need no memory: they still answer
        assert (await client.get(f"/v1/tasks/{first}")).json()["state"] == "pending"
        assert (await client.get("/readyz")).status_code == 200

        private.memory.free()
        again = await enqueue(client, "x", payload=4)
    assert set(dump(private.r, prefix)[GlobalKeys(prefix).queue("default").ready]) == {
        entry(first),
        entry(again),
    }
