"""The root `conveyor` command, its options, and error handling shared by subcommands."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from conveyor import logs
from conveyor.errors import BrokerUnavailableError, ConfigurationError, ConveyorError
from conveyor.settings import Settings, check_redis_url

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.broker.audit import Actor
    from conveyor.broker.inspect import SyncInspector

T = TypeVar("T")

#: Exit codes: 1 an operation failed (not found, conflict, bad input), 2 usage error
#: (click's own; a malformed Redis URL too), 3 Redis unavailable (or what answers is not
#: Redis), 4 a server cannot listen (address in use, no such interface, no permission).
EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_CANNOT_LISTEN = 1, 3, 4


class Context:
    """What every subcommand needs: settings from the root options and the environment."""

    def __init__(self, redis_url: str | None, prefix: str | None, **options: Any) -> None:
        self.options = {"redis_url": redis_url, "prefix": prefix, **options}

    @property
    def redis_url(self) -> str | None:
        """The --redis-url option (or CONVEYOR_REDIS_URL), if given."""
        url: str | None = self.options["redis_url"]
        return url

    def settings(self, **overrides: Any) -> Settings:
        """Settings from CONVEYOR_* variables, then the root options, then `overrides`."""
        return Settings.from_env(**{**self.options, **overrides})

    def app(self, **overrides: Any) -> Conveyor:
        """An app for producing and inspecting; it needs no registered tasks."""
        from conveyor.app import Conveyor

        return Conveyor(settings=self.settings(**overrides))


pass_context = click.make_pass_decorator(Context)

#: Read from the working directory by every command; set variables win over it.
ENV_FILE = ".env"

#: Each subcommand, by name, as "module:attribute": imported only when it runs (or for
#: --help), so a command pays only for the modules it uses.
SUBCOMMANDS = {
    "worker": "conveyor.cli.worker:worker",
    "api": "conveyor.cli.api:api",
    "dashboard": "conveyor.cli.api:dashboard",
    "enqueue": "conveyor.cli.tasks:enqueue",
    "status": "conveyor.cli.tasks:status",
    "cancel": "conveyor.cli.tasks:cancel",
    "events": "conveyor.cli.events:events",
    "workflow": "conveyor.cli.workflows:workflow",
    "queues": "conveyor.cli.queue_admin:queues",
    "pause": "conveyor.cli.queue_admin:pause",
    "resume": "conveyor.cli.queue_admin:resume",
    "workers": "conveyor.cli.queue_admin:workers",
    "flow": "conveyor.cli.queue_admin:flow",
    "schedules": "conveyor.cli.schedules:schedules",
    "dlq": "conveyor.cli.dead:dlq",
    "fsck": "conveyor.cli.admin:fsck",
    "doctor": "conveyor.cli.admin:doctor",
    "demo": "conveyor.cli.demo:demo",
    "up": "conveyor.cli.up:up",
    "load": "conveyor.cli.load:load",
}


def load_env_file() -> None:
    """Set the variables of `.env` in the working directory that are not set already."""
    path = os.path.join(os.getcwd(), ENV_FILE)
    if os.path.isfile(path):
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


def _checked_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A malformed Redis URL is a usage error (exit 2), reported in one line."""
    if value is not None:
        try:
            check_redis_url(value)
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return value


def _merge_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """A connection option given after the subcommand overrides the one given before it."""
    if param.name == "redis_url":
        _checked_url(ctx, param, value)
    shared = ctx.find_object(Context)
    if value is not None and shared is not None and param.name is not None:
        shared.options[param.name] = value


def _connection_options() -> list[click.Option]:
    """--redis-url and --prefix as every subcommand accepts them (no envvar: the root's
    option reads the variable, and an explicit value before the subcommand must stand)."""
    return [
        click.Option(["--redis-url"], expose_value=False, callback=_merge_option,
                     help="Redis to use; overrides the one given before the command."),
        click.Option(["--prefix"], expose_value=False, callback=_merge_option,
                     help="Key prefix; overrides the one given before the command."),
    ]  # fmt: skip


def with_connection_options(command: click.Command) -> click.Command:
    """Add the connection options to `command` and, for a group, to each of its commands.

    Idempotent (commands are module-level objects, loaded once per process but looked up
    on every call), and a command with an option of the same name keeps its own.
    """
    names = {param.name for param in command.params}
    command.params.extend(o for o in _connection_options() if o.name not in names)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_connection_options(sub)
    return command


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented pattern).

    Each loaded command also accepts the connection options after its name
    (`conveyor worker app:app --redis-url ...`), added here rather than in every module.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Read ./.env first, so its variables count as the environment's."""
        load_env_file()
        return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *SUBCOMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = SUBCOMMANDS.get(cmd_name)
        if spec is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = spec.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return with_connection_options(command)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--redis-url",
    envvar="CONVEYOR_REDIS_URL",
    callback=_checked_url,
    help="Redis to use (env CONVEYOR_REDIS_URL; default redis://127.0.0.1:6379/0).",
)
@click.option("--prefix", envvar="CONVEYOR_PREFIX", help="Key prefix (env CONVEYOR_PREFIX).")
@click.option("--log-level", help="DEBUG, INFO, WARNING... (env CONVEYOR_LOG_LEVEL; INFO).")
@click.option("--json-logs", is_flag=True, default=None, help="Log JSON lines (CONVEYOR_LOG_JSON).")
@click.version_option(package_name="conveyor-queue")
@click.pass_context
def cli(
    ctx: click.Context,
    redis_url: str | None,
    prefix: str | None,
    log_level: str | None,
    json_logs: bool | None,
) -> None:
    """Conveyor: a reliable, fast distributed task queue on Redis.

    Run workers, enqueue tasks, inspect queues and dead letters. Every option can also
    be set by a CONVEYOR_* environment variable, and a .env file in the working
    directory sets those not set already. --redis-url and --prefix may also follow the
    command (`conveyor worker app:app --redis-url ...`), and win there.

    \b
    The seeds' variables work too, below the CONVEYOR_* ones:
      REDIS_ADDR=host:port   the Redis URL (CONVEYOR_REDIS_URL)
      QUEUE_NAME             the worker's --queues (CONVEYOR_QUEUES)
      WORKER_CONCURRENCY     the worker's --concurrency (CONVEYOR_CONCURRENCY)
      METRICS_PORT           the worker's --metrics-port (CONVEYOR_METRICS_PORT)

    \b
    Exit codes: 0 done, 1 the operation failed, 2 usage error (a malformed Redis
    URL too), 3 Redis unavailable or not Redis, 4 a server cannot listen.
    """
    ctx.obj = Context(redis_url, prefix, log_level=log_level, log_json=json_logs)
    try:
        settings = ctx.obj.settings()
    except ConveyorError:  # a bad variable: the subcommand reports it when it reads settings
        settings = Settings()
    logs.configure(settings.log_level, settings.log_json)


def run_operation(operation: Callable[[], T]) -> T:
    """Run a CLI operation, turning Conveyor errors into clear messages and exit codes."""
    try:
        return operation()
    except BrokerUnavailableError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except ConveyorError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except Exception as exc:
        not_redis = _protocol_error(exc)
        if not_redis is None:
            raise
        click.echo(f"Error: the server at the Redis URL is not Redis ({not_redis})", err=True)
        sys.exit(EXIT_UNAVAILABLE)


def _protocol_error(exc: BaseException) -> BaseException | None:
    """The reply Redis could not have sent (an HTTP server's, say), if `exc` is or holds it."""
    from conveyor.broker.transport import not_redis

    if not_redis(exc):
        return exc
    if isinstance(exc, BaseExceptionGroup):  # from the worker's TaskGroup
        for inner in exc.exceptions:
            found = _protocol_error(inner)
            if found is not None:
                return found
    return exc.__cause__ and _protocol_error(exc.__cause__)


def operator() -> Actor:
    """The CLI's user, as the audit log names them: `cli:user@host`."""
    import getpass
    import socket

    from conveyor.broker.audit import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    return Actor(f"cli:{user}@{socket.gethostname()}", "cli")


def check_is_redis(ctx: Context) -> None:
    """Fail now if what listens at the URL is not Redis; if nothing does, go on (a worker
    waits for Redis to come up)."""
    from conveyor.broker.inspect import SyncInspector
    from conveyor.broker.sync_broker import SyncBroker

    broker = SyncBroker(ctx.settings())
    try:
        SyncInspector(broker).ping()
    except BrokerUnavailableError:
        pass
    finally:
        broker.close()


def inspect(ctx: Context, use: Callable[[SyncInspector], T]) -> T:
    """Run `use(inspector)` on a fresh connection, with the CLI's error handling."""
    from conveyor.broker.inspect import SyncInspector
    from conveyor.broker.sync_broker import SyncBroker

    def session() -> T:
        broker = SyncBroker(ctx.settings())
        try:
            return use(SyncInspector(broker))
        finally:
            broker.close()

    return run_operation(session)
