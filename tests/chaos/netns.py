"""Real network partitions: each chaos worker runs in its own network namespace.

Needs root (CAP_NET_ADMIN) and `ip`; `unavailable()` says why not, for a clean skip.
Worker slot i gets a namespace with one veth pair to the root namespace, on its own /30
of a private /24 picked per run: the root end holds `.4i+1`, the namespace end `.4i+2`.
The Redis under test also binds the root ends' addresses, so a worker reaches it only
across its own link. `cut(i)` sets the root end down: packets stop both ways while every
socket stays open on each side, which is a partition as TCP sees it (nothing closes
until keepalives or timeouts give up); `heal(i)` sets it up again. `shape(i, ...)`
delays and drops packets on both ends with `tc ... netem`, where the kernel has it.

The ledger is reached over a Unix socket, which no network namespace separates, so a
cut never hides the evidence. Names carry the creating pid (`cvns-<pid>-<tag>-<i>`):
parallel runs never collide, and `sweep()` deletes the namespaces and veth pairs that runs
whose process is gone (killed, aborted) left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Every namespace made here starts with this.
PREFIX = "cvns"
#: Longest an `ip` or `tc` call may take (they answer in milliseconds).
COMMAND_TIMEOUT = 30.0
#: The second octet of the private 10.x.y.0/24 a run may pick.
SECOND_OCTETS = range(200, 250)
_OURS = re.compile(rf"^{PREFIX}-(\d+)-([0-9a-f]+)-(\d+)$")


class NetnsError(RuntimeError):
    """An `ip` or `tc` command failed."""


def run(*command: str, namespace: str | None = None) -> str:
    """Run `command` (in `namespace` if given) and return its output; raise on failure."""
    argv = ["ip", "netns", "exec", namespace, *command] if namespace else list(command)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _probe(*commands: Sequence[str]) -> str | None:
    """Run `commands` in a scratch namespace; the first failure's message, or None."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    scratch = f"{PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:6]}-0"
    try:
        run("ip", "netns", "add", scratch)
    except (NetnsError, OSError) as exc:
        return f"cannot create a network namespace (needs root / CAP_NET_ADMIN): {exc}"
    try:
        run("ip", "link", "set", "lo", "up", namespace=scratch)
        for command in commands:
            run(*command, namespace=scratch)
    except (NetnsError, OSError) as exc:
        return str(exc)
    finally:
        with contextlib.suppress(NetnsError, OSError):
            run("ip", "netns", "delete", scratch)
    return None


def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None if they can."""
    return _probe()


def netem_unavailable() -> str | None:
    """Why `tc qdisc ... netem` cannot be used here (no sch_netem), or None."""
    if shutil.which("tc") is None:
        return "the `tc` command (iproute2) is not installed"
    reason = _probe(("tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"))
    return None if reason is None else f"tc netem is not available in this kernel: {reason}"


def _alive(pid: int) -> bool:
    """True if `pid` runs; a zombie (killed, not yet reaped) does not."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def sweep() -> list[str]:
    """Delete the namespaces of runs whose process is gone, and their veth pairs; returns
    the namespaces' names. A pair must go explicitly: a socket still retransmitting into
    a cut link keeps its namespace, and so the pair, alive for minutes after the delete."""
    if shutil.which("ip") is None:
        return []
    try:
        listed = run("ip", "netns", "list")
    except (NetnsError, OSError):
        return []
    stale = []
    for line in listed.splitlines():
        name = line.split(" ", 1)[0]
        match = _OURS.match(name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(NetnsError):
                run("ip", "netns", "delete", name)
                stale.append(name)
            with contextlib.suppress(NetnsError):  # gone with its namespace, normally
                run("ip", "link", "delete", _outer(match.group(2), int(match.group(3))))
    return stale


def _free_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no interface of the root namespace uses yet."""
    used = [
        ipaddress.ip_interface(word).network
        for line in run("ip", "-4", "-o", "addr", "show").splitlines()
        for word in line.split()[3:4]
    ]
    for _ in range(1000):
        subnet = ipaddress.IPv4Network(f"10.{rng.choice(SECOND_OCTETS)}.{rng.randrange(256)}.0/24")
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NetnsError("no free 10.x.y.0/24 for the chaos namespaces")


def _outer(tag: str, index: int) -> str:
    """The name of the root end of slot `index`'s veth pair (15 bytes at most)."""
    return f"cv{tag}r{index}"


@dataclass(frozen=True, slots=True)
class Link:
    """Worker slot `index`'s namespace and the veth pair that joins it to the root."""

    index: int
    namespace: str
    outer: str  # the root namespace's end
    inner: str  # the end inside `namespace`
    outer_address: str
    inner_address: str


@dataclass(slots=True)
class Network:
    """One namespace per worker slot; a context manager that always removes them."""

    size: int
    rng: random.Random = field(default_factory=random.Random)
    #: Part of every name, unique to this network.
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    links: list[Link] = field(default_factory=list)
    #: The port of the Redis under test (bound on every root end); set once it is chosen.
    redis_port: int = 0
    cut_links: set[int] = field(default_factory=set)

    def create(self) -> Network:
        """Sweep stale namespaces, then make one per slot; undo it all on failure."""
        sweep()
        tag, hosts = self.tag, list(_free_subnet(self.rng).hosts())
        try:
            for i in range(self.size):
                outer, inner = str(hosts[4 * i]), str(hosts[4 * i + 1])  # .4i+1 and .4i+2
                name = f"{PREFIX}-{os.getpid()}-{tag}-{i}"
                self._add(Link(i, name, _outer(tag, i), f"cv{tag}n{i}", outer, inner))
        except BaseException:
            self.close()
            raise
        return self

    def _add(self, link: Link) -> None:
        self.links.append(link)  # listed first: close() removes even a half-made one
        run("ip", "netns", "add", link.namespace)
        run("ip", "link", "add", link.outer, "type", "veth", "peer", "name", link.inner,
            "netns", link.namespace)  # fmt: skip
        run("ip", "addr", "add", f"{link.outer_address}/30", "dev", link.outer)
        run("ip", "link", "set", link.outer, "up")
        inside = ("ip", "addr", "add", f"{link.inner_address}/30", "dev", link.inner)
        for command in (("ip", "link", "set", "lo", "up"), inside,
                        ("ip", "link", "set", link.inner, "up")):  # fmt: skip
            run(*command, namespace=link.namespace)

    def close(self) -> None:
        """Delete every namespace (and with it its veth pair); never raises."""
        for link in self.links:
            with contextlib.suppress(NetnsError, OSError, subprocess.TimeoutExpired):
                run("ip", "netns", "delete", link.namespace)
            with contextlib.suppress(NetnsError, OSError, subprocess.TimeoutExpired):
                run("ip", "link", "delete", link.outer)  # if something holds the namespace
        self.links = []

    def __enter__(self) -> Network:
        return self.create()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what the runner needs -----------------------------------------------------------

    def bind_addresses(self) -> list[str]:
        """The root ends' addresses, for the Redis under test to listen on."""
        return [link.outer_address for link in self.links]

    def command(self, index: int, command: list[str]) -> list[str]:
        """`command` run inside slot `index`'s namespace (`ip netns exec` execs it, so
        the pid is the command's own and signals reach it directly)."""
        return ["ip", "netns", "exec", self.links[index].namespace, *command]

    def env(self, index: int) -> dict[str, str]:
        """What differs for a worker in slot `index`: Redis across its own link."""
        address = self.links[index].outer_address
        return {"CONVEYOR_REDIS_URL": f"redis://{address}:{self.redis_port}/0"}

    # -- faults --------------------------------------------------------------------------

    def cut(self, index: int) -> None:
        """Partition slot `index`: its link goes down, its sockets stay open."""
        run("ip", "link", "set", self.links[index].outer, "down")
        self.cut_links.add(index)

    def heal(self, index: int) -> None:
        """End the partition of slot `index`."""
        run("ip", "link", "set", self.links[index].outer, "up")
        self.cut_links.discard(index)

    def heal_all(self) -> None:
        """Set every cut link up again."""
        for index in sorted(self.cut_links):
            self.heal(index)

    def shape(self, index: int, delay_ms: float, loss_percent: float) -> None:
        """Delay and drop packets both ways on slot `index`'s link (tc netem)."""
        rule = ("netem", "delay", f"{delay_ms}ms", "loss", f"{loss_percent}%")
        link = self.links[index]
        run("tc", "qdisc", "replace", "dev", link.outer, "root", *rule)
        run("tc", "qdisc", "replace", "dev", link.inner, "root", *rule, namespace=link.namespace)

    def unshape(self, index: int) -> None:
        """Remove what `shape` added (absent rules are not an error)."""
        link = self.links[index]
        with contextlib.suppress(NetnsError):
            run("tc", "qdisc", "del", "dev", link.outer, "root")
        with contextlib.suppress(NetnsError):
            run("tc", "qdisc", "del", "dev", link.inner, "root", namespace=link.namespace)
