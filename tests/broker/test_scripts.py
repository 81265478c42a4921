"""scripts.py and the brokers: every script loads after the prelude and states its contract;
a flushed script cache is reloaded transparently, for one call and for a pipeline of several."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import pytest
import redis
from redis.crc import key_slot

from conveyor import Conveyor
from conveyor.broker.keys import PRIORITY_BAND, QueueKeys
from conveyor.broker.ops import combine
from conveyor.broker.scripts import CONSTANTS, load_scripts, prelude_helpers
from conveyor.broker.sync_broker import SyncBroker
from conveyor.events import EVENTS_MAX_LEN
from conveyor.flow import RATE_SLIP_MS
from conveyor.model import ATTEMPT_HISTORY
from tests.broker.seed import claim
from tests.support.keyspace import dump, entry

SCRIPTS = [
    "ack",
    "advance_schedule",
    "cancel",
    "claim",
    "dead_letter",
    "delete_dead",
    "delete_task",
    "end_cancel",
    "enqueue",
    "extend_leases",
    "find_dead",
    "fsck_flow",
    "fsck_index",
    "fsck_records",
    "lead",
    "pause_schedule",
    "progress",
    "promote_due",
    "recover",
    "release_worker",
    "replay",
    "replay_edited",
    "requeue",
    "retry",
    "run_now",
    "trim_dead",
    "upsert_schedule",
    "workers",
    "workflow_step",
]


def lua_files() -> dict[str, bytes]:
    """The .lua files shipped in the package, by name without the suffix."""
    folder = resources.files("conveyor.broker").joinpath("lua")
    return {
        entry.name.removesuffix(".lua"): entry.read_bytes()
        for entry in folder.iterdir()
        if entry.name.endswith(".lua")
    }


def head() -> bytes:
    """What precedes each script's own file: the constants from Python, then the prelude."""
    constants = "".join(f"local {name} = {value}\n" for name, value in CONSTANTS.items())
    return constants.encode() + lua_files()["prelude"]


def contract_and_body(name: str) -> tuple[str, str]:
    """The leading comment block of a script's file, and the code after it."""
    lines = lua_files()[name].decode().splitlines()
    end = next(i for i, line in enumerate(lines) if not line.startswith("--"))
    return "\n".join(lines[:end]), "\n".join(lines[end:])


def test_every_lua_file_but_the_prelude_is_loaded_under_its_name_after_its_helpers() -> None:
    files = lua_files()
    scripts = load_scripts()
    assert sorted(files) == sorted([*SCRIPTS, "prelude"])
    assert sorted(scripts) == SCRIPTS
    prelude = files["prelude"].decode()
    helpers = prelude_helpers(prelude)
    assert "".join(helpers.values()) == prelude  # every line belongs to one helper
    constants = "".join(f"local {name} = {value}\n" for name, value in CONSTANTS.items())
    for name, script in scripts.items():
        own = files[name].decode()
        source = script.source.decode()
        defined = re.findall(r"^local function (\w+)", source[: len(source) - len(own)], re.M)
        # what the script and its helpers call, comments and definitions left out
        code = re.sub(r"--.*|local function \w+\(", "", source)
        called = {helper for helper in helpers if re.search(rf"\b{helper}\(", code)}
        assert set(defined) == called, name  # each helper it calls, and no other
        kept = "".join(text for helper, text in helpers.items() if helper in called)
        assert (script.name, source) == (name, constants + kept + own)
        assert script.sha == hashlib.sha1(script.source).hexdigest()


def test_the_prelude_reads_no_keys_and_no_script_redefines_or_repeats_it() -> None:
    code = re.sub(r"--.*", "", lua_files()["prelude"].decode())
    assert not re.search(r"\b(KEYS|ARGV)\b", code)
    names = set(re.findall(r"^local (?:function )?(\w+)", head().decode(), re.M))
    assert CONSTANTS == {
        "PRIORITY_BAND": PRIORITY_BAND,
        "DEFAULT_BAND_START": 100 * PRIORITY_BAND,
        "DEFAULT_BAND_END": 101 * PRIORITY_BAND,
        "MIN_PRIORITY": -100,
        "MAX_PRIORITY": 100,
        "ATTEMPT_HISTORY": ATTEMPT_HISTORY,
        "RATE_SLIP": RATE_SLIP_MS,
        "EVENTS_MAX_LEN": EVENTS_MAX_LEN,
    }
    assert names == {
        *CONSTANTS,
        "now_ms",
        "archive_attempt",
        "counter",
        "counter_or_zero",
        "pending_score",
        "ready_entry",
        "remove_pending",
        "pending_count",
        "stored_priority",
        "wake",
        "event",
        "event_batch",
        "to_pending",
        "revive",
        "after_crash",
        "flow_of",
        "is_live",
        "reentry_score",
        "wake_waiting",
        "unlock_unique",
        "release_flow",
        "release_held",
        "drop_flow",
        "end_cancelled",
    }
    for name in SCRIPTS:
        source = lua_files()[name].decode()
        assert not names & set(re.findall(r"\blocal (?:function )?(\w+)", source)), name
        assert "'TIME'" not in source and str(PRIORITY_BAND) not in source, name


def test_the_prelude_helpers(r: redis.Redis, keys: QueueKeys) -> None:
    """Strict counters for what a claim fences with; lenient ones for outcome tallies."""
    body = """
    local strict, lenient = {}, {}
    for i, value in ipairs(ARGV) do
        strict[i] = counter(value) or -1
        redis.call('HSET', KEYS[1], 'n', value)
        lenient[i] = counter_or_zero(KEYS[1], 'n')
    end
    redis.call('DEL', KEYS[1])
    local before, now, after = now_ms(), now_ms(), now_ms()
    redis.call('HSET', KEYS[1], 'priority', '250')
    local high = stored_priority(KEYS[1])
    redis.call('HSET', KEYS[1], 'priority', 'x')
    wake(KEYS[2])
    wake(KEYS[2])
    return {strict, lenient, counter(false), counter_or_zero(KEYS[1], 'n'),
        before <= now and now <= after and now > 1.6e12 and 1 or 0,
        high, stored_priority(KEYS[1]), pending_score(-100, 7), redis.call('LLEN', KEYS[2])}
    """
    values = ["0", "7", "123456789012345", "1000000000000000", "007", "-2", "1.5", "abc", "nan"]
    reply = r.eval(head().decode() + body, 2, keys.task("helpers"), keys.signal, *values)
    assert reply[0] == [0, 7, 123456789012345, -1, -1, -1, -1, -1, -1]
    assert reply[1] == [0, 7, 123456789012345, 10**15, 7, 0, 1, 0, 0]
    assert reply[2:7] == [0, 0, 1, 100, 0]
    assert reply[7:] == [200 * PRIORITY_BAND + 7, 1]


def test_keys_built_in_lua_share_the_slot_of_the_declared_prefix(keys: QueueKeys) -> None:
    """docs/design.md lists these twenty-two and why each is slot-safe: the tag closes first.
    A script appends to a prefix itself, or passes it to a prelude helper that does."""
    appends = (
        r"KEYS\[\d+\] \.\.|(release_held|release_flow|drop_flow|to_pending|end_cancelled)\(.*KEYS"
    )
    appending = {name for name in SCRIPTS if re.search(appends, lua_files()[name].decode())}
    declared = {
        name
        for name in SCRIPTS
        if re.search(r"^-- KEYS\[\d+\] \w+ prefix ", contract_and_body(name)[0], re.M)
    }
    assert appending == declared and len(appending) == 22
    for task_id in ("q:01J", "{other}x", "}{", ""):
        assert key_slot(keys.task(task_id).encode()) == key_slot(keys.pending.encode())


@pytest.mark.parametrize("name", SCRIPTS)
def test_redis_compiles_the_script_under_its_sha(name: str, r: redis.Redis) -> None:
    script = load_scripts()[name]
    assert r.script_load(script.source) == script.sha
    assert r.script_exists(script.sha) == [True]


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_opens_with_its_contract(name: str) -> None:
    contract, body = contract_and_body(name)
    assert contract.startswith(f"-- {name}.lua: ")
    assert re.search(r"^-- KEYS\[1\] ", contract, re.M)
    assert re.search(r"^-- ARGV\[1(\]|\.\.\])", contract, re.M)
    assert re.search(r"^-- Returns: ", contract, re.M)
    for kind in ("KEYS", "ARGV"):
        documented = {int(n) for n in re.findall(rf"^-- {kind}\[(\d+)\] ", contract, re.M)}
        open_ended = [int(n) for n in re.findall(rf"^-- {kind}\[(\d+)\.\.\]", contract, re.M)]
        used = {int(n) for n in re.findall(rf"\b{kind}\[(\d+)\]", body)}
        undocumented = {n for n in used - documented if not any(n >= m for m in open_ended)}
        assert not undocumented, f"{kind} used but not in the contract: {undocumented}"
        assert documented <= used, f"{kind} in the contract but never read: {documented - used}"
        assert sorted(documented) == list(range(1, len(documented) + 1))


def test_a_single_call_reloads_a_flushed_script(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    handle = app.enqueue("job")
    sha = load_scripts()["claim"].sha
    r.script_flush()
    assert r.script_exists(sha) == [False]
    tasks = claim(broker, 5)
    assert [(t.id, t.token) for t in tasks] == [(handle.id, 1)]
    assert r.script_exists(sha) == [True]
    assert r.hget(keys.task(handle.id), "state") == b"active"


def test_a_pipeline_reloads_only_the_flushed_scripts_and_runs_each_call_once(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    first, second = app.enqueue_many([app.message("job", 1), app.message("job", 2)])
    later = app.enqueue("job", 3, delay=60)
    r.script_flush()
    r.script_load(load_scripts()["claim"].source)  # the first call of the pipeline is cached
    op = combine(
        [
            broker.ops.claim("default", 1, "w1"),
            broker.ops.promote_due("default"),
            broker.ops.trim_dead("default"),
        ]
    )
    claimed, promoted, trimmed = broker.run(op)
    assert [(t.id, t.token) for t in claimed.tasks] == [(first.id, 1)]
    assert promoted[0] == 0 and 59 < promoted[1] <= 60
    assert trimmed == 0
    state = dump(r, prefix)
    # the cached claim ran once: one task active with token 1, the other still pending
    assert list(state[keys.active]) == [first.id]
    assert state[keys.ready] == [entry(second.id)]
    assert list(state[keys.scheduled]) == [later.id]
    assert state[keys.task(first.id)]["token"] == "1"
    assert "token" not in state[keys.task(second.id)]
    shas = [load_scripts()[n].sha for n in ("claim", "promote_due", "trim_dead")]
    assert r.script_exists(*shas) == [True, True, True]


def test_a_multi_queue_enqueue_pipeline_reloads_a_flushed_script(
    app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    r.script_flush()
    # alpha gets 3 tasks, beta 1001 in two chunks: three script calls and one SADD
    queues = ["alpha" if i % 500 == 0 else "beta" for i in range(1004)]
    handles = app.enqueue_many([app.message("job", i, queue=q) for i, q in enumerate(queues)])
    state = dump(r, prefix)
    assert state[f"{prefix}:queues"] == ["alpha", "beta"]
    for queue in ("alpha", "beta"):
        expected = [h.id for h in handles if h.id.startswith(queue + ":")]
        assert state[f"{prefix}:{{{queue}}}:ready"] == [entry(i) for i in expected]
    assert not any(h.replayed for h in handles)


async def test_the_async_broker_reloads_flushed_scripts(
    aapp: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    first, second = await aapp.enqueue_many_async([aapp.message("job"), aapp.message("job")])
    broker = aapp.async_broker()
    r.script_flush()
    claimed = await broker.run(broker.ops.claim("default", 1, "w1"))
    assert [t.id for t in claimed.tasks] == [first.id]
    r.script_flush()
    op = combine([broker.ops.claim("default", 1, "w2"), broker.ops.recover("default")])
    again, recovered = await broker.run(op)
    assert [t.id for t in again.tasks] == [second.id] and recovered == []
    assert r.hmget(keys.task(second.id), "state", "worker") == [b"active", b"w2"]
