"""The asyncio client packs commands with hiredis, and still speaks every command form."""

from __future__ import annotations

import pytest
import redis

from conveyor.broker.transport import async_client
from conveyor.settings import Settings


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
