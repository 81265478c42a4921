"""`conveyor api` (the REST producer and admin API on :8085, with the simple API of the Go
services Conveyor descends from) and
`conveyor dashboard` (the web dashboard on :8082)."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

import click

from conveyor.cli.root import EXIT_CANNOT_LISTEN, Context, pass_context, run_operation
from conveyor.tools.embedded import is_loopback_host

#: --access-log on either server: one line per request on stdout (uvicorn's format).
access_log_option = click.option(
    "--access-log", is_flag=True, envvar="CONVEYOR_ACCESS_LOG",
    help="Log every request on stdout (off by default).",
)  # fmt: skip

DEFAULT_PORT = 8085
DASHBOARD_PORT = 8082
#: Seconds a stopping server waits for open connections (the dashboard's live streams
#: never end by themselves) before it closes them.
GRACEFUL_SHUTDOWN = 3

log = logging.getLogger("conveyor.dashboard")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="CONVEYOR_API_HOST",
              help="Interface to listen on (0.0.0.0 for every interface).")  # fmt: skip
@click.option("--port", default=DEFAULT_PORT, show_default=True, envvar="CONVEYOR_API_PORT",
              type=click.IntRange(0, 65535))  # fmt: skip
@click.option("--dashboard", "with_dashboard", is_flag=True,
              help="Serve the dashboard too, at /dashboard, behind the same tokens.")  # fmt: skip
@click.option("--app", "app_spec", metavar="MODULE:APP", envvar="CONVEYOR_API_APP",
              help="Refuse task names this app does not register (422 unknown_task); "
                   "run its middleware on enqueues.")  # fmt: skip
@access_log_option
@pass_context
def api(
    ctx: Context,
    host: str,
    port: int,
    with_dashboard: bool,
    app_spec: str | None,
    access_log: bool,
) -> None:
    """Serve the HTTP API: /v1, and the simple API (POST /task, GET /stats) compatible
    with the Go services Conveyor descends from.

    Without --app any valid task name is accepted; with it, only those the app registers,
    and its middleware (tracing, say) runs on every enqueue.

    Tokens, an allow-list of task names and limits come from CONVEYOR_API_TOKENS
    ("name:secret:write,other:read"), CONVEYOR_API_ALLOWED_TASKS, CONVEYOR_API_MAX_BODY
    and CONVEYOR_API_MAX_BATCH. OpenAPI at /openapi.json, interactive docs at /docs.
    """

    def build() -> Any:
        from conveyor.api import create_app
        from conveyor.api.config import ApiSettings
        from conveyor.cli.worker import load_app

        api_settings = ApiSettings.from_env()
        if with_dashboard:
            _check_exposure(host, api_settings.tokens, "dashboard")
        registry = load_app(app_spec) if app_spec else None
        return create_app(ctx.settings(), api_settings, dashboard=with_dashboard, app=registry)

    run_operation(lambda: _serve(build, host, port, access_log))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="CONVEYOR_DASHBOARD_HOST",
              help="Interface to listen on; beyond 127.0.0.1 only with tokens set.")  # fmt: skip
@click.option("--port", default=DASHBOARD_PORT, show_default=True,
              envvar="CONVEYOR_DASHBOARD_PORT", type=click.IntRange(0, 65535))  # fmt: skip
@click.option("--read-only", is_flag=True, envvar="CONVEYOR_DASHBOARD_READ_ONLY",
              help="Show everything, offer and accept no action, whatever the token.")  # fmt: skip
@access_log_option
@pass_context
def dashboard(ctx: Context, host: str, port: int, read_only: bool, access_log: bool) -> None:
    """Serve the web dashboard: queues, workers, tasks, dead letters and the audit log,
    live. GET / is the page and GET /stats the simple API's counters.

    It uses the API's tokens (CONVEYOR_API_TOKENS): a `read` token sees, a `write` token
    acts. Without tokens it is open, so it only binds 127.0.0.1.

    Prints "listening on http://HOST:PORT" once it listens; exit code 4 when it cannot
    (the port is in use, say).
    """

    def build() -> Any:
        from conveyor.api.config import ApiSettings
        from conveyor.dashboard.app import create_dashboard

        api_settings = ApiSettings.from_env()
        _check_exposure(host, api_settings.tokens, "dashboard")
        return create_dashboard(ctx.settings(), api_settings, read_only=read_only)

    run_operation(lambda: _serve(build, host, port, access_log))


def _check_exposure(host: str, tokens: dict[str, Any], what: str) -> None:
    """Without tokens the dashboard lets anyone act: refuse to serve it beyond loopback."""
    if tokens:
        return
    if not is_loopback_host(host):
        raise click.UsageError(
            f"the {what} has no tokens (CONVEYOR_API_TOKENS) and would be open to anyone "
            f"who reaches {host}: set tokens, or keep --host 127.0.0.1"
        )
    log.warning("no API tokens set: the %s is open to anyone on this machine (%s)", what, host)


def _serve(build: Callable[[], Any], host: str, port: int, access_log: bool) -> None:
    # imported here: FastAPI alone would double the start-up time of every other command
    import uvicorn

    from conveyor.cli.serving import AnnouncingServer

    # the app first (it refuses an exposure it should not allow), then the socket, bound
    # here rather than by uvicorn: a port in use fails with its own exit code
    config = uvicorn.Config(
        build(), log_level="warning", access_log=access_log,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )  # fmt: skip
    if access_log:  # uvicorn logs requests at INFO, below the level of its other loggers
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    # uvicorn drains on SIGTERM/SIGINT, then raises the signal again for the handler that
    # was there before it: this one, so a clean shutdown exits with code 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    with _listen(host, port) as sock:
        AnnouncingServer(config, _url(host, sock.getsockname()[1])).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or exit 4 with one line saying why it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        _cannot_listen(host, port, exc)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        _cannot_listen(host, port, exc)
    return sock


def _cannot_listen(host: str, port: int, exc: OSError) -> NoReturn:
    reason = exc.strerror or str(exc)
    click.echo(f"Error: cannot listen on {host}:{port}: {reason}", err=True)
    sys.exit(EXIT_CANNOT_LISTEN)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
