"""An app as `conveyor dlq show --app` imports it: task `flaky` with a decorator budget."""

from __future__ import annotations

from conveyor import Conveyor

app = Conveyor()


@app.task(name="flaky", max_retries=1)
def flaky() -> None:
    raise ValueError("always")
