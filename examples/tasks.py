"""The tasks of a small shop: run them with `conveyor worker examples.tasks:app`.

Task names are what producers send: `@app.task` names a task `module.function` unless
given a `name=`, so the names here are explicit, and a producer that does not import
this module (the HTTP API, another service) can still enqueue them.
"""

from __future__ import annotations

import asyncio

from conveyor import Conveyor, Retry, TaskContext

app = Conveyor()  # CONVEYOR_REDIS_URL, else redis://localhost:6379/0


@app.task(name="send-receipt", queue="emails", max_retries=5, timeout=30)
async def send_receipt(order_id: int, email: str) -> dict[str, object]:
    """I/O-bound: runs on the worker's event loop."""
    await asyncio.sleep(0.05)  # the mail provider's API call
    return {"order_id": order_id, "sent_to": email}


@app.task(name="charge-card", queue="payments", max_retries=3)
def charge_card(order_id: int, amount_cents: int, ctx: TaskContext) -> str:
    """Sync: runs in a worker thread. The fencing token makes the charge idempotent
    downstream: the payment provider refuses a write with a smaller token."""
    if amount_cents <= 0:
        raise ValueError(f"order {order_id}: nothing to charge")  # fails for good
    if ctx.attempt == 1 and order_id % 10 == 0:
        raise Retry(delay=0.5, reason="the provider asked us to try again")
    return f"charged order {order_id} {amount_cents} cents (token {ctx.token})"
