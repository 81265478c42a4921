"""A TCP relay for a replication link: a replica replicates from the relay's port, and the
relay forwards each connection to the master. `pause()` stops forwarding from the master
to the replica (what the master sends is read and held, never delivered), so the replica
falls behind by exactly the writes made meanwhile, as a slow network would leave it; the
replica's own traffic (REPLCONF ACK) still reaches the master. `close()` drops the held
data with the connections: after a crash of the master, nothing of it reaches the replica.

Threads, not asyncio: the tests that use it block on other things meanwhile.
"""

from __future__ import annotations

import contextlib
import socket
import threading

#: Bytes read from a socket at a time.
CHUNK = 65536


class Relay:
    """Listens on a free loopback port (`port`) and forwards to `upstream` on loopback."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        #: bytes from the master read and held back since the pause (more wait unread)
        self.held = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self) -> None:
        """Stop delivering what the master sends; hold it."""
        self._flowing.clear()

    def close(self) -> None:
        """Stop listening and close every connection, dropping what is held."""
        self._closed.set()
        self._flowing.set()  # wake the paused pumps, which see `closed` and drop their data
        with self._lock:
            for sock in [self._listener, *self._sockets]:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                replica, _ = self._listener.accept()
                master = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
            except OSError:
                if self._closed.is_set():
                    return
                continue  # the master is down: the replica's attempt ends here
            master.settimeout(None)
            with self._lock:
                self._sockets += [replica, master]
            threading.Thread(target=self._pump, args=(master, replica, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(replica, master, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, pausable: bool) -> None:
        """Copy `source` to `target` until either closes; from the master, only while not
        paused (a chunk read during a pause waits, and is dropped if the relay closes)."""
        try:
            while data := source.recv(CHUNK):
                if pausable and not self._flowing.is_set():
                    self.held += len(data)
                    self._flowing.wait()
                if self._closed.is_set():
                    return
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
