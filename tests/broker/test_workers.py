"""workers.lua: the live workers' descriptions; a worker whose description expired (it
stopped heart-beating, e.g. its process was killed) is dropped from the registry."""

from __future__ import annotations

import time

import orjson
import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from conveyor.broker.sync_broker import SyncBroker
from tests.support.keyspace import dump


def register(broker: SyncBroker, worker_id: str) -> dict[str, object]:
    info: dict[str, object] = {"id": worker_id, "queues": ["default"]}
    now_ms = int(time.time() * 1000)
    broker.run(broker.ops.register_worker(worker_id, orjson.dumps(info), now_ms))
    return info


def test_live_workers_are_listed_and_the_registry_is_unchanged(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    infos = [register(broker, "w1"), register(broker, "w2")]
    before = dump(r, prefix)
    assert sorted(app.inspector.workers(), key=lambda i: str(i["id"])) == infos
    assert dump(r, prefix) == before


def test_a_worker_whose_description_expired_is_forgotten(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    keys = GlobalKeys(prefix)
    alive = register(broker, "alive")
    register(broker, "killed")
    r.pexpire(keys.worker("killed"), 1)  # its heartbeat stopped: the description runs out
    while r.exists(keys.worker("killed")):
        time.sleep(0.001)
    before = dump(r, prefix)

    assert app.inspector.workers() == [alive]
    after = dump(r, prefix)
    assert after[keys.workers] == {"alive": before[keys.workers]["alive"]}
    assert after == {**before, keys.workers: after[keys.workers]}  # nothing else changed
