"""transport.py, the only code that speaks to redis-py: both sides reload a flushed script
cache in one more round trip, map a lost server to BrokerUnavailableError and leave error
replies in place when asked; the sync side's held connection is reused and safe across
threads, forks and lost connections; the async side packs commands with hiredis."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import redis

from conveyor import BrokerUnavailableError, Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import BuiltOnRead, Operations
from conveyor.broker.scripts import Call
from conveyor.broker.transport import (
    SEND_AHEAD,
    AsyncTransport,
    ReplyError,
    SyncTransport,
    async_client,
)
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer


class Transport:
    """One side of the transport, sync or async, driven from an async test."""

    def __init__(self, side: str, settings: Settings) -> None:
        self.side = side
        self.sync = SyncTransport(settings) if side == "sync" else None
        self.async_ = AsyncTransport(settings) if side == "async" else None
        #: The calls of each round trip, once `count_round_trips` is on.
        self.round_trips: list[list[Call]] = []

    async def execute(self, calls: Sequence[Call], *, raise_errors: bool = True) -> list[Any]:
        if self.sync is not None:
            return self.sync.execute(calls, raise_errors=raise_errors)
        assert self.async_ is not None
        return await self.async_.execute(calls, raise_errors=raise_errors)

    def count_round_trips(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Record what each round trip sends, at the seam where the transport sends it."""
        if self.sync is not None:
            send = self.sync._send

            def sync_send(calls: Sequence[Call]) -> list[Any]:
                self.round_trips.append(list(calls))
                return send(calls)

            monkeypatch.setattr(self.sync, "_send", sync_send)
            return
        assert self.async_ is not None
        async_send = self.async_._send

        async def counted(calls: Sequence[Call]) -> list[Any]:
            self.round_trips.append(list(calls))
            return await async_send(calls)

        monkeypatch.setattr(self.async_, "_send", counted)

    async def close(self) -> None:
        if self.sync is not None:
            self.sync.close()
        if self.async_ is not None:
            await self.async_.close()


MakeTransport = Callable[[Settings], Transport]


@pytest.fixture(params=["sync", "async"])
async def transport_on(request: pytest.FixtureRequest) -> AsyncIterator[MakeTransport]:
    """Makes transports of one side (each test runs with both) on some settings."""
    made: list[Transport] = []

    def make(settings: Settings) -> Transport:
        made.append(Transport(request.param, settings))
        return made[-1]

    yield make
    for each in made:
        await each.close()


# -- both sides ----------------------------------------------------------------------------


async def test_a_flushed_script_cache_costs_one_more_round_trip(
    transport_on: MakeTransport,
    settings: Settings,
    r: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport = transport_on(settings)
    ops = Operations(settings)
    promote, recover = ops.promote_due("default").calls[0], ops.recover("default").calls[0]
    calls = [promote, Call.command("ECHO", "plain"), recover, promote]
    warm = await transport.execute(calls)  # loads the scripts
    r.script_flush()
    transport.count_round_trips(monkeypatch)
    assert await transport.execute(calls) == warm
    assert promote.script is not None and recover.script is not None
    first, second = transport.round_trips
    assert first == calls
    # each missing script loaded once, then only the calls that needed one, in order
    assert second == [
        Call.command("SCRIPT", "LOAD", promote.script.source),
        Call.command("SCRIPT", "LOAD", recover.script.source),
        promote,
        recover,
        promote,
    ]


async def test_error_replies_stay_in_their_place_when_asked(
    transport_on: MakeTransport, settings: Settings, prefix: str
) -> None:
    transport = transport_on(settings)
    key = f"{prefix}:text"
    calls = [Call.command("SET", key, "a"), Call.command("INCR", key), Call.command("GET", key)]
    first, error, last = await transport.execute(calls, raise_errors=False)
    assert (first, last) == (True, b"a")
    assert isinstance(error, ReplyError) and "not an integer" in str(error)
    with pytest.raises(ReplyError, match="not an integer"):  # raised by default
        await transport.execute(calls)


async def test_a_stopped_server_is_unavailable_by_host_and_port(
    transport_on: MakeTransport, settings: Settings, redis_server: RedisServer
) -> None:
    with RedisServer(redis_server.binary) as private:  # started, and removed after
        transport = transport_on(settings.replace(redis_url=private.url))
        assert await transport.execute([Call.command("ECHO", "up")]) == [b"up"]
        private.stop()
        with pytest.raises(BrokerUnavailableError) as raised:
            await transport.execute([Call.command("ECHO", "down")])
    assert str(raised.value).startswith(f"Redis at 127.0.0.1:{private.port} is unavailable")


# -- the async side --------------------------------------------------------------------------


async def test_wait_then_execute_returns_none_after_a_script_flush(
    app: Conveyor, settings: Settings, keys: QueueKeys, r: redis.Redis
) -> None:
    transport = AsyncTransport(settings)
    try:
        claim = Operations(settings).claim("default", 1, "w1").calls
        await transport.execute(claim)  # loads the script
        handle = app.enqueue("t")  # and pushes the wake-up token the wait pops
        r.script_flush()
        assert await transport.wait_then_execute(keys.signal, 1.0, claim) is None
        assert not r.exists(keys.signal)  # the wait ran; the claim behind it did not
        listed = r.lrange(keys.ready, 0, -1)
        assert listed == [handle.id.rpartition(":")[2].encode()] and not r.exists(keys.active)
    finally:
        await transport.close()


async def test_commands_of_every_form_round_trip(settings: Settings, prefix: str) -> None:
    client = async_client(settings)
    try:
        pool = client.connection_pool
        assert pool.connection_class.__name__.startswith("Hiredis")
        key = f"{prefix}:k"
        # str, bytes, int and float arguments, and a multi-word command name (CONFIG GET)
        assert await client.hset(key, mapping={"s": "é", "b": b"\x00\xff", "i": 7, "f": 0.5})
        assert await client.hgetall(key) == {
            b"s": "é".encode(), b"b": b"\x00\xff", b"i": b"7", b"f": b"0.5"
        }  # fmt: skip
        assert "maxmemory-policy" in await client.config_get("maxmemory-policy")
        await client.delete(key)
    finally:
        await client.aclose()


async def test_an_unencodable_argument_is_a_data_error(settings: Settings) -> None:
    client = async_client(settings)
    try:
        with pytest.raises(redis.DataError):
            await client.execute_command("SET", "k", None)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


# -- the sync side: its held connection ------------------------------------------------------


def _connections(r: redis.Redis) -> set[str]:
    """The ids of the connections named as Conveyor names its own."""
    return {c["id"] for c in r.client_list() if c.get("name") == "conveyor"}


def test_single_calls_share_one_connection(app: Conveyor, r: redis.Redis) -> None:
    app.enqueue("t", 0)  # the first also registers the queue, in a pipeline from the pool
    before = _connections(r)
    handles = [app.enqueue("t", i) for i in range(50)]
    assert [h.enqueued_state for h in handles] == ["pending"] * 50
    # none opened (one an earlier test left may close meanwhile: the server is shared)
    assert _connections(r) - before == set()


def test_a_killed_connection_is_replaced_and_nothing_is_stored_twice(
    app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("t", 0)  # registers the queue over a pooled connection
    app.enqueue("t", 1)  # opens the held connection
    assert r.client_kill_filter(_type="normal", skipme=True) >= 1
    handle = app.enqueue("t", 2)
    assert handle.record() is not None
    assert r.llen(keys.ready) == 3


def test_a_flushed_script_cache_is_reloaded(app: Conveyor, r: redis.Redis) -> None:
    app.enqueue("t", 0)
    r.script_flush()
    assert app.enqueue("t", 1).enqueued_state == "pending"


def test_concurrent_threads_all_enqueue(app: Conveyor, keys: QueueKeys, r: redis.Redis) -> None:
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(100):
                app.enqueue("t", i)
        except BaseException as exc:  # surfaced below: a thread cannot fail the test
            errors.append(exc)

    threads = [threading.Thread(target=produce) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert r.llen(keys.ready) == 800


def test_a_forked_child_opens_its_own_connection(
    app: Conveyor, keys: QueueKeys, r: redis.Redis
) -> None:
    app.enqueue("t", "registers the queue")
    app.enqueue("t", "opens the held connection")
    pid = os.fork()
    # parent and child enqueue at once: on a shared socket they would read each other's replies
    if pid == 0:
        stored = False
        try:
            stored = all(app.enqueue("t", i).record() is not None for i in range(300))
        finally:
            os._exit(0 if stored else 1)  # never back into pytest
    handles = [app.enqueue("t", i) for i in range(300)]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert all(h.record() is not None for h in handles)
    assert r.llen(keys.ready) == 602


def test_close_then_use_again(app: Conveyor) -> None:
    app.enqueue("t", 0)
    app.sync_broker().close()
    assert app.enqueue("t", 1).enqueued_state == "pending"


# -- sending ahead ---------------------------------------------------------------------


def test_a_large_call_is_sent_before_the_next_is_built(
    settings: Settings, prefix: str, r: redis.Redis
) -> None:
    """Redis runs the first call while the second is built: its builder finds the first's
    write stored already (through another connection)."""
    transport = SyncTransport(settings)
    key = f"{prefix}:large"
    seen: list[bool] = []

    def second() -> Call:
        deadline = time.monotonic() + 10
        while not r.exists(key) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(bool(r.exists(key)))
        return Call.command("STRLEN", key)

    calls = BuiltOnRead(
        [Call.command("SET", key, "x" * SEND_AHEAD)], [second, lambda: Call.command("PING")]
    )
    try:
        assert transport.execute(calls) == [True, SEND_AHEAD, True]
    finally:
        transport.close()
    assert seen == [True]


def test_a_call_failing_to_build_sends_nothing_more_and_the_connection_is_clean(
    settings: Settings, prefix: str, r: redis.Redis
) -> None:
    transport = SyncTransport(settings)
    key = f"{prefix}:large"

    def broken() -> Call:
        raise RuntimeError("cannot build")

    calls = BuiltOnRead([Call.command("SET", key, "x" * SEND_AHEAD)], [broken])
    try:
        with pytest.raises(RuntimeError, match="cannot build"):
            transport.execute(calls)
        # the first call's reply was never read: the next round trip does not get it
        assert transport.execute([Call.command("STRLEN", key)]) == [SEND_AHEAD]
    finally:
        transport.close()


def test_built_on_read_builds_each_call_once_when_first_read() -> None:
    built: list[int] = []

    def builder(n: int) -> Callable[[], Call]:
        def build() -> Call:
            built.append(n)
            return Call.command("ECHO", str(n))

        return build

    ready = Call.command("PING")
    calls = BuiltOnRead([ready], [builder(1), builder(2)])
    assert len(calls) == 3 and built == []
    assert calls[0] is ready and built == []
    assert calls[-1].args == ("ECHO", "2") and built == [2]
    assert [c.args for c in calls[1:]] == [("ECHO", "1"), ("ECHO", "2")]
    assert [c.args for c in calls] == [("PING",), ("ECHO", "1"), ("ECHO", "2")]
    assert built == [2, 1]  # each once
    with pytest.raises(IndexError):
        calls[3]
