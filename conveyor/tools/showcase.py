"""The tasks of `conveyor up --demo`, in the spirit of the services Conveyor descends from
(email notifications, image resizing, reports), and the gentle stream that feeds them.

Some are slow, a few fail at random so retries show, and every fourth report asks for a
month that does not exist, so the dead-letter queue fills too.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

from conveyor import Conveyor

app = Conveyor()
#: The queues the demo's workers take, in order ("default" gets what the API sends by name).
QUEUES = "emails,images,reports,default"
_random = random.Random()


@app.task(name="email-notification", queue="emails", max_retries=3)
async def email_notification(payload: Any) -> dict[str, Any]:
    """Sends an email (async, I/O-bound); one in twenty SMTP calls fails and is retried."""
    await asyncio.sleep(_random.uniform(0.02, 0.15))
    if _random.random() < 0.05:
        raise ConnectionError(f"SMTP server refused the message to {payload}")
    return {"sent_to": payload}


@app.task(name="image-resize", queue="images", max_retries=2)
def image_resize(payload: Any) -> dict[str, Any]:
    """Resizes an image (sync, runs in a worker thread)."""
    time.sleep(_random.uniform(0.05, 0.3))
    return {"resized": payload, "width": 640}


@app.task(name="report-generation", queue="reports", max_retries=1, timeout=30)
async def report_generation(payload: dict[str, Any]) -> dict[str, Any]:
    """Builds a monthly report (slow); a month that does not exist fails every time."""
    await asyncio.sleep(_random.uniform(0.5, 2.0))
    month = str(payload.get("month", ""))
    if not month[-2:].isdigit() or not 1 <= int(month[-2:]) <= 12:
        raise ValueError(f"no such month: {month!r}")
    return {"month": month, "rows": _random.randint(100, 5000)}


def feed(producer: Conveyor, stop: threading.Event, per_second: float = 3.0) -> None:
    """Enqueue a gentle stream until `stop`: mostly emails, some images, a report every
    few seconds (the first, then every fourth, bad), and now and then a delayed email."""
    sent = 0
    while not stop.is_set():
        sent += 1
        producer.enqueue("email-notification", payload=f"user{sent}@example.com")
        if sent % 3 == 0:
            producer.enqueue("image-resize", payload=f"/uploads/photo-{sent}.jpg")
        if sent % 12 == 1:
            month = "2026-13" if sent % 48 == 1 else f"2026-{_random.randint(1, 12):02d}"
            producer.enqueue("report-generation", payload={"month": month})
        if sent % 20 == 0:
            producer.enqueue("email-notification", payload=f"later{sent}@example.com", delay=30)
        stop.wait(1 / per_second)
