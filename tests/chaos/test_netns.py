"""Real network partitions: the namespace plumbing, and the scenarios that use it.

Needs root (CAP_NET_ADMIN) and iproute2; without them every test here skips and says
why. Run it alone with `python -m pytest tests/chaos/test_netns.py`; the soak version is
`python -m tests.chaos --only netns-partition --minutes 3`. To see the skips as root, drop
every capability: `setpriv --bounding-set=-all --inh-caps=-all python -m pytest ...`.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conveyor.tools.embedded import RedisServer
from tests.chaos import netns
from tests.chaos.cluster import ROOT, Deployment, Fleet, WorkerSlot
from tests.chaos.faults import Chaos
from tests.chaos.netns import NetnsError, Network
from tests.chaos.partitions import NETNS_SCENARIOS, link_cuts, requirement
from tests.chaos.proxy import ChaosProxy
from tests.chaos.report import Report, markdown
from tests.chaos.runner import redis_binary, run_scenario, wait_for
from tests.chaos.scenarios import SHORT_TASKS, Scenario, Size

pytestmark = pytest.mark.chaos

#: A few hundred tasks over a few seconds, like the chaos suite's short runs, with time
#: for three to five cuts: the scenario takes about 20 s.
SHORT = Size(tasks=SHORT_TASKS, window=10.0)
#: Seconds a probe from a cut namespace may try to reach Redis: it must fail anyway.
CUT_PROBE_TIMEOUT = 1.0
#: Seconds a probe across a working link may take on a loaded machine.
PROBE_TIMEOUT = 30.0
#: Connects from inside a namespace, names the connection, PINGs once per stdin line.
HOLDER = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
conn.sendall(b"CLIENT SETNAME holder\\r\\n")
print(conn.recv(64).decode().strip(), flush=True)
for _ in sys.stdin:
    conn.sendall(b"PING\\r\\n")
    print(conn.recv(64).decode().strip(), flush=True)
"""
#: Connects from inside a namespace and PINGs once: exit code 0 for PONG.
PINGER = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
conn.sendall(b"PING\\r\\n")
sys.exit(0 if conn.recv(7).startswith(b"+PONG") else 1)
"""


def ours() -> list[str]:
    """Namespaces this process made and has not deleted yet."""
    listed = netns.run("ip", "netns", "list").splitlines()
    return [line.split()[0] for line in listed if line.startswith(f"{netns.PREFIX}-{os.getpid()}-")]


def explain(report: Report) -> str:
    """The report as a failure message: its row, then each violation and note."""
    lines = [markdown([report]), *(f"FAIL: {v}" for v in report.violations)]
    return "\n".join(lines + [f"note: {n}" for n in report.notes])


@pytest.fixture(scope="module")
def permitted() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def network(permitted: None) -> Iterator[Network]:
    with Network(2) as made:
        yield made


@pytest.fixture
def server(network: Network, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server listening on the root ends of `network`'s links."""
    bind = ("--bind", " ".join(["127.0.0.1", *network.bind_addresses()]), "--protected-mode", "no")
    with RedisServer(redis_binary(), data_dir=tmp_path / "redis", extra_args=bind) as started:
        network.redis_port = started.port
        yield started


def ping_from(network: Network, index: int, timeout: float) -> bool:
    """True if a process in slot `index`'s namespace gets PONG from the server."""
    link = network.links[index]
    argv = [sys.executable, "-c", PINGER, link.outer_address, str(network.redis_port), str(timeout)]
    done = subprocess.run(network.command(index, argv), capture_output=True)
    return done.returncode == 0


def test_a_cut_partitions_its_own_slot_and_keeps_sockets_open(
    network: Network, server: RedisServer
) -> None:
    holder = subprocess.Popen(
        network.command(0, [sys.executable, "-c", HOLDER, network.links[0].outer_address,
                            str(server.port), str(PROBE_TIMEOUT)]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "+OK"
        network.cut(0)
        assert not ping_from(network, 0, CUT_PROBE_TIMEOUT)  # no new connection gets through
        assert ping_from(network, 1, PROBE_TIMEOUT)  # the other slot is not cut
        client = redis.Redis.from_url(server.url)
        names = [c["name"] for c in client.client_list()]
        client.close()
        assert "holder" in names  # Redis still lists the partitioned connection
        network.heal(0)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "+PONG"  # the same socket works again
        assert ping_from(network, 0, PROBE_TIMEOUT)
    finally:
        holder.kill()
        holder.communicate()


def link_state(network: Network, index: int) -> str:
    """UP or DOWN: the state of slot `index`'s root end."""
    return netns.run("ip", "-br", "link", "show", network.links[index].outer).split()[1]


def test_closing_the_cut_script_heals_every_link(network: Network, tmp_path: Path) -> None:
    sleepers = [subprocess.Popen(network.command(i, ["sleep", "300"])) for i in range(2)]
    deployment = Deployment("redis://127.0.0.1:1/0", "p", "", "", 2.0, 1.0, tmp_path)
    fleet = Fleet(deployment, 2, 1, 1.0, launcher=network)
    fleet.slots = [WorkerSlot(i, p, f"w{i}") for i, p in enumerate(sleepers)]
    with ChaosProxy(1) as proxy:
        idle = RedisServer(redis_binary(), data_dir=tmp_path / "redis")  # never started
        chaos = Chaos(fleet, proxy, idle, 2.0, math.inf, random.Random(1), network=network)
        script = link_cuts(chaos, most=2)
        try:
            assert next(script) == 1.0  # the settling pause, nothing cut yet
            assert next(script) > 2.0  # the first cut outlasts the lease
            cut = sorted(network.cut_links)
            assert cut and all(link_state(network, i) == "DOWN" for i in cut)
            assert [f.worker for f in chaos.faults] == [f"w{i}" for i in cut]
            script.close()  # the run ends (or fails) mid-cut
            assert network.cut_links == set()
            assert [link_state(network, i) for i in range(2)] == ["UP", "UP"]
            assert all(f.end is not None for f in chaos.faults)
        finally:
            for sleeper in sleepers:
                sleeper.kill()
                sleeper.wait()


def test_close_removes_a_half_made_network(permitted: None) -> None:
    tag = os.urandom(3).hex()
    blocker = f"cv{tag}r1"  # the name slot 1's root end needs: its creation fails
    netns.run("ip", "link", "add", blocker, "type", "veth", "peer", "name", f"cv{tag}b1")
    try:
        with pytest.raises(NetnsError, match="exists"):
            Network(2, tag=tag).create()
        assert not [name for name in ours() if f"-{tag}-" in name]
        assert tag not in netns.run("ip", "-o", "link", "show")
    finally:
        subprocess.run(["ip", "link", "delete", blocker], capture_output=True)


def test_sweep_deletes_only_what_dead_runs_left(permitted: None) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    tag = os.urandom(3).hex()
    dead, alive = f"{netns.PREFIX}-{gone.pid}-{tag}-0", f"{netns.PREFIX}-{os.getpid()}-{tag}-0"
    for name in (dead, alive):
        netns.run("ip", "netns", "add", name)
    netns.run("ip", "link", "add", f"cv{tag}r0", "type", "veth", "peer", "name", f"cv{tag}n0",
              "netns", dead)  # fmt: skip
    # a process inside keeps the namespace, and so the pair, alive after its delete
    holder = subprocess.Popen(["ip", "netns", "exec", dead, "sleep", "300"])
    try:
        inside = f"/proc/{holder.pid}/exe"  # `ip` execs sleep once it joined the namespace
        wait_for(lambda: os.path.realpath(inside).endswith("sleep"), 30, "sleep to start")
        assert dead in netns.sweep()
        assert ours() == [alive]
        assert f"cv{tag}r0" not in netns.run("ip", "-o", "link", "show")
    finally:
        holder.kill()
        holder.wait()
        for name in (dead, alive):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        subprocess.run(["ip", "link", "delete", f"cv{tag}r0"], capture_output=True)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_without_cap_net_admin_it_says_why(permitted: None) -> None:
    # root with an empty bounding set execs with no capability at all, yet can still
    # read its own files (a fresh virtualenv may be private to root)
    powerless = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    code = "from tests.chaos import netns; print(netns.unavailable())"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*powerless, sys.executable, "-c", code], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=True)  # fmt: skip
    assert "cannot create a network namespace" in done.stdout


def test_netem_shapes_a_link_or_fails_loudly(network: Network) -> None:
    if netns.netem_unavailable() is None:
        network.shape(0, 1.0, 0.0)
        assert "netem" in netns.run("tc", "qdisc", "show", "dev", network.links[0].outer)
        network.unshape(0)
        assert "netem" not in netns.run("tc", "qdisc", "show", "dev", network.links[0].outer)
    else:  # the netem scenario skips; a fault script that tried anyway would not pass
        with pytest.raises(NetnsError, match="netem"):
            network.shape(0, 1.0, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", NETNS_SCENARIOS, ids=lambda s: s.name)
def test_netns_scenario_keeps_every_invariant(scenario: Scenario, tmp_path: Path) -> None:
    reason = requirement(scenario)
    if reason is not None:
        pytest.skip(reason)
    report = run_scenario(scenario, SHORT, tmp_path / scenario.name, seed=7)
    assert report.passed, explain(report)
    assert report.tasks > 0.5 * SHORT.tasks, explain(report)
    assert sum(report.faults.values()) > 0, "no fault was injected"
    if scenario.faults is link_cuts:  # repeated: the window holds two cuts at the least
        assert report.faults.get("link cut", 0) >= 2, explain(report)
    assert ours() == []  # every namespace (and its veth pair) is gone
