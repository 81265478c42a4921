"""`conveyor api`: the REST producer and admin API (seed-compatible on :8085)."""

from __future__ import annotations

import signal
from types import FrameType

import click

from conveyor.cli.root import Context, pass_context, run_operation

DEFAULT_PORT = 8085


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="CONVEYOR_API_HOST",
              help="Interface to listen on (0.0.0.0 for every interface).")  # fmt: skip
@click.option("--port", default=DEFAULT_PORT, show_default=True, envvar="CONVEYOR_API_PORT",
              type=click.IntRange(0, 65535))  # fmt: skip
@pass_context
def api(ctx: Context, host: str, port: int) -> None:
    """Serve the HTTP API: POST /task and GET /stats as the seeds had them, and /v1.

    Tokens, an allow-list of task names and limits come from CONVEYOR_API_TOKENS
    ("secret:write,other:read"), CONVEYOR_API_ALLOWED_TASKS, CONVEYOR_API_MAX_BODY and
    CONVEYOR_API_MAX_BATCH. OpenAPI at /openapi.json, interactive docs at /docs.
    """

    def serve() -> None:
        # imported here: FastAPI alone would double the start-up time of every other command
        import uvicorn

        from conveyor.api import create_app
        from conveyor.api.config import ApiSettings

        app = create_app(ctx.settings(), ApiSettings.from_env())
        # uvicorn drains on SIGTERM/SIGINT, then raises the signal again for the handler
        # that was there before it: this one, so a clean shutdown exits with code 0
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _exit_cleanly)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)

    run_operation(serve)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
