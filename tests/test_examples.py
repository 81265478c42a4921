"""The examples run as their README says: a FastAPI service enqueues, a worker runs the
tasks, the service reports their state; on a real Redis, through real HTTP calls to the app."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conveyor import TaskState
from conveyor.settings import Settings
from examples import producer, tasks
from tests.support.worker import running_worker, wait_until


@pytest.fixture
def shop(settings: Settings) -> Iterator[None]:
    """The examples' app on this test's Redis and key prefix."""
    before = tasks.app.settings
    tasks.app.settings = settings.replace(retry_backoff_base=0.05)
    yield
    tasks.app.settings = before


@pytest.mark.usefixtures("shop")
async def test_an_order_is_charged_and_its_receipt_sent_by_the_worker() -> None:
    transport = httpx.ASGITransport(app=producer.api)
    async with (
        producer.api.router.lifespan_context(producer.api),
        httpx.AsyncClient(transport=transport, base_url="http://shop") as client,
        running_worker(tasks.app, "emails,payments"),
    ):
        orders = [{"id": 10, "email": "ada@example.com", "amount_cents": 1250},
                  {"id": 11, "email": "bob@example.com", "amount_cents": 0}]  # fmt: skip
        taken = [(await client.post("/orders", json=order)).json() for order in orders]
        retry = await client.post("/orders", json=orders[0])  # the same order again
        assert retry.json()["receipt"] == taken[0]["receipt"]  # its idempotency key

        async def state(task_id: str) -> object:
            return (await client.get(f"/tasks/{task_id}")).json()["state"]

        async def settled() -> bool:
            wanted = {taken[0]["charge"]: "succeeded", taken[0]["receipt"]: "succeeded",
                      taken[1]["charge"]: "dead"}  # fmt: skip
            return all([await state(i) == s for i, s in wanted.items()])

        await wait_until(settled, 15, "the orders to be handled")
        charged = (await client.get(f"/tasks/{taken[0]['charge']}")).json()
        # order 10 was asked to retry once: the second attempt charged it
        assert charged["attempts"] == 2 and "charged order 10 1250 cents" in charged["result"]
        assert await state(taken[1]["receipt"]) == TaskState.SUCCEEDED
        assert (await client.get("/tasks/default:01J0000000000000000000000X")).json() == {
            "id": "default:01J0000000000000000000000X", "state": "unknown"
        }  # fmt: skip
