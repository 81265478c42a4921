"""The ceiling of the HTTP stack: FastAPI on uvicorn, as `conveyor api` serves it, doing nothing.

`python -m benchmarks.bare_app PORT` answers every `POST /task` with a constant 202 JSON.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()
QUEUED = {"status": "queued", "task_id": "default:01JBENCHMARK0000000000000000"}


@app.post("/task", status_code=202)
async def post_task() -> dict[str, str]:
    """The same status and body shape as Conveyor's, without reading the request."""
    return QUEUED


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
