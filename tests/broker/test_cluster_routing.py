"""The Cluster transport's pure decisions, without I/O: one WAIT per master that took a
keyed call before it, its replies folded to the fewest replicas, and the WAITs sent again
with calls that ran only on a later round trip (NOSCRIPT, a migrating slot); which replies
mean "the slot is migrating, send again"; how a per-node SCAN reply reads; and which calls
go one by one to a chosen node."""

from __future__ import annotations

from dataclasses import dataclass

from redis.crc import key_slot
from redis.exceptions import ClusterError, NoScriptError, ResponseError, TryAgainError

from conveyor.broker.cluster_routing import (
    as_one_node,
    folded,
    is_keyless,
    pipelined,
    resent,
    unsettled,
    with_sources,
)
from conveyor.broker.scripts import Call, load_scripts


@dataclass(frozen=True)
class Node:
    name: str


def node_of(key: str) -> Node:
    """Three masters by slot range, as `redis-cli --cluster create` splits them."""
    return Node(f"m{key_slot(key.encode()) * 3 // 16384}")


def keys_on_masters() -> dict[str, str]:
    """A key on each of the three masters, by master name."""
    found: dict[str, str] = {}
    for n in range(100):
        found.setdefault(node_of(f"{{q{n}}}:pending").name, f"{{q{n}}}:pending")
    return found


def test_a_wait_goes_once_to_each_master_that_ran_a_script_before_it() -> None:
    keys = keys_on_masters()
    script = next(iter(load_scripts().values()))
    calls = [
        Call.script_call(script, [keys["m0"]], []),
        Call.script_call(script, [keys["m0"]], []),
        Call.script_call(script, [keys["m2"]], []),
        Call.command("SADD", keys["m1"], "q"),  # the registry's: in the pipeline, not waited on
        Call.command("TIME", route=keys["m1"]),  # keyless: sent on its own, not waited on
        Call.command("WAIT", 1, 100, route=keys["m0"]),
    ]
    entries = pipelined(calls, node_of)
    assert [(i, node) for i, _, node in entries] == [
        (0, None), (1, None), (2, None), (3, None), (5, Node("m0")), (5, Node("m2"))
    ]  # fmt: skip


def test_a_wait_without_writes_before_it_goes_to_its_route() -> None:
    keys = keys_on_masters()
    entries = pipelined([Call.command("WAIT", 1, 100, route=keys["m1"])], node_of)
    assert [node for _, _, node in entries] == [Node("m1")]


def test_a_wait_sent_to_several_masters_answers_with_the_fewest_replicas() -> None:
    wait = Call.command("WAIT", 1, 100)
    write = Call.command("LPUSH", "k", 1)
    entries = [(0, write, None), (1, wait, Node("a")), (1, wait, Node("b"))]
    assert folded(entries, [1, 1, 0]) == {0: 1, 1: 0}
    refused = ResponseError("NOPERM this user has no permissions to run the 'wait' command")
    assert folded(entries, [1, refused, 1])[1] is refused
    # a master demoted by a failover (the writes went to the new one): nothing confirmed
    demoted = ResponseError("WAIT cannot be used with replica instances.")
    assert folded(entries, [1, 1, demoted]) == {0: 1, 1: 0}
    assert folded(entries, [1, ConnectionError("gone"), 1]) == {0: 1, 1: 0}


def test_waits_go_again_after_a_node_ran_a_script_only_on_the_second_round_trip() -> None:
    script = next(iter(load_scripts().values()))
    call = Call.script_call(script, ["{q}:pending"], [])
    wait = Call.command("WAIT", 1, 100)
    steps = with_sources([call, wait])
    first = next(steps)
    assert list(first) == [call, wait]
    # the node lacked the script: nothing ran there, so its WAIT confirmed nothing
    again = steps.send([NoScriptError("NOSCRIPT"), 1])
    assert [str(c.args[0]) for c in again] == ["EVAL", "WAIT"]
    try:
        steps.send(["ran", 0])
    except StopIteration as done:
        assert done.value == ["ran", 0]
    else:
        raise AssertionError("two round trips at most")


def test_only_tryagain_and_exhausted_redirections_are_sent_again() -> None:
    replies = [
        TryAgainError("Multiple keys request during rehashing of slot"),
        1,
        ClusterError("TTL exhausted."),
        ClusterError("Cluster is down"),  # unavailable: reported, not retried
        ResponseError("ERR a script failed"),  # a real error: it ran
        None,
    ]
    assert unsettled(replies) == [0, 2]
    assert unsettled([1, b"OK", None]) == []


def test_a_scan_merged_per_node_reads_as_one_redis_answers_it() -> None:
    assert as_one_node(({"127.0.0.1:7000": 17}, [b"a", b"b"])) == [17, [b"a", b"b"]]
    assert as_one_node(({}, [])) == [0, []]
    assert as_one_node([3, [b"a"]]) == [3, [b"a"]]
    assert as_one_node({"redis_version": "7.0"}) == {"redis_version": "7.0"}


def test_a_scan_or_a_call_naming_a_node_goes_alone_to_a_node() -> None:
    assert is_keyless(Call.command("SCAN", 0, "MATCH", "p:*"))
    assert is_keyless(Call.command("INFO", "all", node="127.0.0.1:7000"))
    assert is_keyless(Call.command("GET", "k", node="127.0.0.1:7000"))
    assert not is_keyless(Call.command("GET", "k"))


def test_waits_go_again_with_the_calls_of_a_migrating_slot() -> None:
    write = Call.command("LPUSH", "{q}:ready", 1)
    other = Call.command("LPUSH", "{r}:ready", 1)
    wait = Call.command("WAIT", 1, 100)
    # the write did not run (TRYAGAIN): its WAIT confirmed nothing of it, so both go again
    assert resent([write, other, wait], [TryAgainError("TRYAGAIN"), 1, 1]) == [0, 2]
    assert resent([write, other, wait], [1, 1, 1]) == []
