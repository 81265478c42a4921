"""The subprocess app of the cancel and checkpoint crash tests: tests/support/tasks.py's app
with rendezvous' `hold` (a thread handler that ignores ctx.cancelled) and `resume`
(checkpoints, then holds) added."""

from __future__ import annotations

import tests.support.rendezvous  # noqa: F401  (registers `meet` and `hold` on the app)
from tests.support import handlers
from tests.support.tasks import app

app.task(name="resume")(handlers.resume)
