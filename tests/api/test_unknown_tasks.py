"""An API given the app refuses task names its registry lacks; without it, any name goes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.api.config import ApiSettings
from conveyor.settings import Settings
from tests.api.helpers import assert_error, fields_named
from tests.support.keyspace import dump


def send_email(address: str) -> None:
    """A handler registered under its default name, `module.function`."""


@pytest.fixture
async def known(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an API given an app that registers `<this module>.send_email` and `report`."""
    registry = Conveyor(settings=settings)
    registry.task(send_email)
    registry.task(name="report")(send_email)
    server = create_app(settings, ApiSettings(), app=registry)
    transport = httpx.ASGITransport(app=server)
    async with (
        server.router.lifespan_context(server),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


async def test_unknown_names_are_422_with_the_likeliest_known_names_first(
    known: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    full_name = f"{__name__}.send_email"
    answers = [
        (await known.post("/task", json={"type": "send_email", "payload": "a@b"}), "type"),
        (await known.post("/v1/tasks", json={"name": "send_email"}), "name"),
        (
            await known.post(
                "/v1/tasks/batch", json={"tasks": [{"name": "report"}, {"name": "send_email"}]}
            ),
            "tasks.1.name",
        ),
    ]
    for response, field in answers:
        error = assert_error(response, 422, "unknown_task")
        assert fields_named(error) == [field]
        assert "'send_email'" in error["message"], error
        # the registered name it was meant to be comes first
        assert error["message"].split("known tasks: ")[1].startswith(full_name), error
        assert "report" in error["details"][0]["message"]
    assert dump(r, prefix) == {}  # nothing of the batch was stored either
    for response in (
        await known.post("/task", json={"type": full_name, "payload": "a@b"}),
        await known.post("/v1/tasks", json={"name": "report"}),
        await known.post("/v1/tasks/batch", json={"tasks": [{"name": full_name}]}),
    ):
        assert response.status_code == 202, response.text


async def test_without_the_app_any_valid_name_is_accepted(client: httpx.AsyncClient) -> None:
    for response in (
        await client.post("/task", json={"type": "send_email", "payload": "a@b"}),
        await client.post("/v1/tasks", json={"name": "nobody.handles.this"}),
    ):
        assert response.status_code == 202, response.text
