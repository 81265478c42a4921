"""--redis-url and --prefix after the subcommand as well as before it; the later one wins."""

from __future__ import annotations

import pytest
import redis
from click.testing import CliRunner, Result

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from conveyor.cli import cli
from conveyor.tools.embedded import RedisServer, free_port


def conveyor(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="conveyor")


def test_options_after_the_subcommand(
    redis_server: RedisServer, prefix: str, app: Conveyor, r: redis.Redis
) -> None:
    result = conveyor("enqueue", "send", "--redis-url", redis_server.url, "--prefix", prefix)
    assert result.exit_code == 0, result.output
    task_id = result.stdout.strip()
    record = app.get_record(task_id)
    assert record is not None and record.name == "send"
    assert r.smembers(GlobalKeys(prefix).queues) == {b"default"}


def test_the_subcommands_value_wins(redis_server: RedisServer, prefix: str) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    before = ["--redis-url", nowhere, "--prefix", "elsewhere"]
    after = ["--redis-url", redis_server.url, "--prefix", prefix]
    assert conveyor(*before, "enqueue", "send", "--queue", "emails", *after).exit_code == 0
    result = conveyor(*before, "queues", "--json", *after)
    assert result.exit_code == 0, result.output
    assert '"name":"emails"' in result.stdout and '"pending":1' in result.stdout


def test_the_root_options_still_apply_without_the_subcommands(
    redis_server: RedisServer, prefix: str
) -> None:
    result = conveyor("--redis-url", redis_server.url, "--prefix", prefix, "queues")
    assert (result.exit_code, result.stdout) == (0, "no queues yet\n")


def test_nested_commands_accept_them_too(redis_server: RedisServer, prefix: str) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    result = conveyor("--redis-url", nowhere, "dlq", "list", "--redis-url", redis_server.url)
    assert (result.exit_code, result.stdout) == (0, ""), result.output
    # on the group itself, before its subcommand
    result = conveyor("dlq", "--redis-url", nowhere, "list")
    assert result.exit_code == 3, result.output


@pytest.mark.parametrize("command", ["worker", "api", "dashboard", "queues", "pause", "dlq show"])
def test_every_subcommand_documents_them(command: str) -> None:
    result = conveyor(*command.split(), "--help")
    assert result.exit_code == 0, result.output
    assert "--redis-url" in result.stdout and "--prefix" in result.stdout
    # added once, however often the command is looked up
    assert result.stdout.count("--redis-url") == 1
