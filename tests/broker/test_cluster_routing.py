"""The Cluster transport's pure decisions: which replies mean "the slot is migrating, send
again", how a per-node SCAN reply reads, and which calls go one by one to a chosen node."""

from __future__ import annotations

from redis.exceptions import ClusterError, ResponseError, TryAgainError

from conveyor.broker.cluster_routing import as_one_node, is_keyless, unsettled
from conveyor.broker.scripts import Call


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
