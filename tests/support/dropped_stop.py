"""An app whose import is interrupted by SIGTERM inside a weakref callback.

There a signal handler's SystemExit is printed and dropped, as when the import system runs
its own callbacks while loading a real app: `conveyor worker` must still stop, not start
a worker that never heard the signal.
"""

from __future__ import annotations

import os
import signal
import time
import weakref

from conveyor import Conveyor
from tests.support import handlers


class _Token:
    """Something to drop, so that its weakref callback runs."""


def _stop_me(_ref: weakref.ref[_Token]) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    # the handler runs between two bytecodes of this loop, still in this callback (its
    # SystemExit ends the loop). On a busy machine the signal may reach another thread of
    # the process first, and the main thread learn of it only later: wait for it, do not
    # count on a fixed number of iterations
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.001)


_token = _Token()
_watch = weakref.ref(_token, _stop_me)
del _token

app = Conveyor()
app.task(name="record", max_retries=0)(handlers.record)
