"""A FastAPI service that takes orders and hands the slow work to Conveyor.

uvicorn examples.producer:api
conveyor worker examples.tasks:app -q emails,payments   # the worker, beside it
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

from examples.tasks import app, charge_card, send_receipt


class Order(BaseModel):
    id: int
    email: str
    amount_cents: int


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    yield
    await app.aclose()  # the app's Redis connections close with the service


api = FastAPI(title="Shop", lifespan=lifespan)


@api.post("/orders", status_code=202)
async def take_order(order: Order) -> dict[str, str]:
    """Answers at once; the card is charged and the receipt sent by the workers."""
    charged = await charge_card.enqueue_async(order.id, order.amount_cents)
    # idempotency_key: a client retrying the same order does not send two receipts
    sent = await send_receipt.enqueue_async(
        order.id, order.email, idempotency_key=f"receipt-{order.id}"
    )
    return {"charge": charged.id, "receipt": sent.id}


@api.get("/tasks/{task_id}")
async def task_status(task_id: str) -> dict[str, object]:
    """Where a task is: its state, attempts and result."""
    record = await app.async_inspector().task(task_id)
    if record is None:
        return {"id": task_id, "state": "unknown"}
    return {"id": task_id, "state": record.state, "attempts": record.attempts,
            "result": record.result}  # fmt: skip
