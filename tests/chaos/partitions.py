"""Chaos scenarios with real network partitions: workers in network namespaces (netns.py).

`netns-partition` cuts the veth links of one or two workers at a time for half a lease
to two and a half leases, over and over. A short cut must cost nothing but latency: the
worker's sockets stay open on both sides, so Redis still lists its connections and the
reaper (which takes back the tasks of a worker whose connections are all gone) leaves
it alone. Nor does it act on a long cut: a reply Redis could not deliver is retransmitted
for as long as TCP retries (about 15 minutes by default), so the connection stays listed
even when keepalives would close an idle one. A cut past the lease lets the other
workers take the tasks back when the lease runs out; when the link heals, fencing must
refuse the outcomes the cut worker reports late. A claim Redis ran just as a worker was
cut leases tasks that worker never hears of ("claims never started their handler"): they
come back after one lease, counted as a lost worker. Ordinary tasks only: a task held
for several leases is caught by cut after cut, and after `max_crashes` lost workers it
is dead-lettered as a poison pill, which is the crash policy at work, not a lost task.

`netns-netem` delays and drops packets on every link instead (`tc netem`), where the
kernel has it (the sch_netem module). Both go through the same runner and judge as every
other scenario. They need root (or CAP_NET_ADMIN), so they are not in `SCENARIOS`;
`requirement()` says why one cannot run, and the test and the soak skip it then:

    python -m pytest tests/chaos/test_netns.py           # both, each skipped if it cannot run
    python -m tests.chaos --only netns-partition --minutes 3
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

from tests.chaos import netns
from tests.chaos.cluster import WorkerSlot
from tests.chaos.faults import Chaos, Fault, Steps
from tests.chaos.netns import NetnsError, Network
from tests.chaos.scenarios import Mix, Scenario

#: How long a cut lasts, in leases: from well inside one to well past it.
CUT_LEASES = (0.5, 2.5)
#: Seconds between the end of one cut and the next.
CUT_GAP = 0.5
#: Leases a healed worker is left alone before it may be cut again: time to write the
#: outcomes the cut held back. Without it a link that flaps faster than a worker recovers
#: costs a short task its worker cut after cut, until `max_crashes` dead-letters it as a
#: poison pill (seen once in 6,920 tasks): the crash policy's limit, not lost work.
REST_LEASES = 1.0
#: What `netns-netem` does to every packet: a delay each way and a loss rate.
NETEM_DELAY_MS = 50.0
NETEM_LOSS_PERCENT = 5.0
#: What the workers log when a partition cost a task its owner, by what it counts.
TAKEOVER_SIGNS = {
    "reaped workers": "is gone (none of its connections is left)",
    "leases expired": "lease expired; returned to pending",
    "late outcomes fenced off": "lease lost; outcome dropped",
}


def _network(chaos: Chaos) -> Network:
    if chaos.network is None:
        raise RuntimeError("a network-namespace fault needs a scenario with netns=True")
    return chaos.network


def _rested(chaos: Chaos, healed: dict[int, float]) -> list[WorkerSlot]:
    """Running workers not cut within the last `REST_LEASES` leases."""
    since = time.monotonic() - REST_LEASES * chaos.lease
    live = [slot for slot in chaos.fleet.live() if chaos.ready(slot.worker_id)]
    return [slot for slot in live if healed.get(slot.index, -math.inf) < since]


def link_cuts(chaos: Chaos, most: int = 2) -> Steps:
    """Cut the links of up to `most` random workers for `CUT_LEASES` leases, heal, repeat.
    The first cut is the longest, so even a short run sees leases run out and late
    outcomes fenced off."""
    network = _network(chaos)
    span = CUT_LEASES[1]
    healed: dict[int, float] = {}  # slot -> when its last cut ended
    yield 1.0
    while chaos.injecting(span * chaos.lease):
        rested = _rested(chaos, healed)
        if not rested:
            yield CUT_GAP
            continue
        victims = chaos.rng.sample(rested, min(len(rested), chaos.rng.randint(1, most)))
        cuts: list[tuple[int, Fault]] = []
        try:
            for slot in victims:  # logged before the cut, healed after: it covers it all
                cuts.append((slot.index, chaos.begin("link cut", slot.worker_id)))
                network.cut(slot.index)
            yield span * chaos.lease
        finally:
            for index, fault in cuts:
                with contextlib.suppress(NetnsError):  # heal_all() in the runner retries
                    network.heal(index)
                chaos.heal(fault)
                healed[index] = time.monotonic()
        span = chaos.rng.uniform(*CUT_LEASES)
        yield CUT_GAP


def lossy_links(chaos: Chaos) -> Steps:
    """Delay and drop packets on every worker's link for the whole production."""
    network = _network(chaos)
    fault = chaos.begin(f"netem {NETEM_DELAY_MS:.0f} ms, {NETEM_LOSS_PERCENT:.0f}% loss")
    try:
        for link in network.links:
            network.shape(link.index, NETEM_DELAY_MS, NETEM_LOSS_PERCENT)
        while chaos.injecting():
            yield 0.5
    finally:
        for link in network.links:
            network.unshape(link.index)
        chaos.heal(fault)


NETNS_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "netns-partition",
        link_cuts,
        mix=Mix(work_seconds=0.3),
        netns=True,
        min_faults=(("link cut", 2),),
    ),
    Scenario(
        "netns-netem",
        lossy_links,
        mix=Mix(long=2),
        netns=True,
        min_faults=((f"netem {NETEM_DELAY_MS:.0f} ms, {NETEM_LOSS_PERCENT:.0f}% loss", 1),),
    ),
)


def requirement(scenario: Scenario) -> str | None:
    """Why `scenario` cannot run on this machine, or None if it can."""
    if not scenario.netns:
        return None
    if scenario.faults is lossy_links:
        return netns.netem_unavailable()
    return netns.unavailable()


def takeovers(log_dir: Path) -> str:
    """A note counting, from the worker logs, how partitions passed work to others."""
    text = "".join(log.read_text(errors="replace") for log in sorted(log_dir.glob("*.log")))
    counts = ", ".join(f"{text.count(sign)} {what}" for what, sign in TAKEOVER_SIGNS.items())
    return f"worker logs (at least: a reply lost to a cut goes unlogged): {counts}"
