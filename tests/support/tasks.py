"""The app that worker subprocesses of the tests run (`conveyor worker tests.support.tasks:app`).

Its Redis URL, prefix and lease come from CONVEYOR_* variables set by the test.
"""

from __future__ import annotations

from conveyor import Conveyor
from tests.support import handlers

app = Conveyor()
app.task(name="record", max_retries=0)(handlers.record)
app.task(name="record_async", max_retries=0)(handlers.record_async)
app.task(name="crash", max_retries=0)(handlers.crash)
app.task(name="burn", executor="process")(handlers.burn)
app.task(name="burn_in_thread", executor="thread")(handlers.burn)
