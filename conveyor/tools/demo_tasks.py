"""Tasks of `conveyor demo`: one of each kind a real app has."""

from __future__ import annotations

import asyncio
import hashlib

from conveyor import Conveyor, Retry, TaskContext

app = Conveyor()


@app.task(queue="emails", max_retries=5, timeout=30)
async def send_welcome_email(to: str, name: str) -> dict[str, str]:
    """An async handler: I/O-bound work runs on the worker's event loop."""
    await asyncio.sleep(0.05)
    return {"to": to, "subject": f"Welcome, {name}!"}


@app.task
def resize_image(path: str, width: int) -> str:
    """A sync handler: runs in a worker thread, off the event loop."""
    return f"{path} resized to {width}px"


@app.task(executor="process", timeout=60)
def checksum(data: str, rounds: int) -> str:
    """CPU-bound: runs in a child process so the worker's heartbeats keep going."""
    digest = data.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@app.task(max_retries=3)
def flaky_webhook(url: str, ctx: TaskContext) -> str:
    """Fails twice, then succeeds: retries wait with exponential backoff and jitter."""
    if ctx.attempt < 3:
        raise Retry(delay=0.2, reason=f"{url} answered 503")
    return f"delivered to {url} on attempt {ctx.attempt}"


@app.task(max_retries=1)
def poison(payload: object) -> None:
    """Always fails: ends in the dead-letter queue, where it can be inspected and replayed."""
    raise ValueError(f"cannot handle {payload!r}")


@app.task(name="email-notification")
def notify(payload: object) -> str:
    """The seeds' task type: an untyped payload arrives as one argument."""
    return f"notified {payload}"
