"""`python -m benchmarks.dashboard`: how fast the dashboard answers on a big deployment.

It seeds a private redis-server with `--queues` queues (pending, delayed and running tasks
in each), `--dead` dead letters spread over them (each with a traceback) and 24 hours of
chart history, serves `conveyor dashboard` on a free loopback port, then times every
request the pages make, `--repeats` times each, over real HTTP. The first read of the
24-hour history is timed apart: later ones reuse the settled buckets the process cached.

python -m benchmarks.dashboard                              # 100 queues, 10,000 dead letters
python -m benchmarks.dashboard --queues 5 --dead 200 --repeats 3 --json out.json  # smoke
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx

from conveyor import Conveyor
from conveyor.broker.ops import encode_error
from conveyor.broker.sync_broker import SyncBroker
from conveyor.broker.timeseries import FINE, Tally, flush_calls
from conveyor.tools.embedded import RedisServer, free_port

#: A traceback about as long as a real one from a web framework's stack.
TRACEBACK = "".join(f'  File "app/module_{i}.py", line {i}, in handler_{i}\n    call()\n'
                    for i in range(25)) + "ValueError: the upstream answered 502\n"  # fmt: skip


def seed(url: str, queues: int, dead: int) -> list[str]:
    """Queues with tasks in every state, dead letters, and a day of history; returns the
    dead letters' ids."""
    app = Conveyor(redis_url=url)
    broker = app.sync_broker()
    names = [f"queue-{i:03d}" for i in range(queues)]
    ids: list[str] = []
    for start in range(0, dead, 500):  # dead letters first: then every claim takes them
        chunk = [app.message(f"task-{i % 7}", i, queue=names[i % queues])
                 for i in range(start, min(dead, start + 500))]  # fmt: skip
        app.enqueue_many(chunk)
        for name in sorted({str(m.options.queue) for m in chunk}):
            claimed = broker.run(broker.ops.claim(name, 500, "bench-worker")).tasks
            broker.execute([broker.ops.dead_letter(t, "error", _error(t.name)) for t in claimed])
            ids += [t.id for t in claimed]
    for name in names:
        app.enqueue_many([app.message("job", i, queue=name) for i in range(20)])
        app.enqueue_many([app.message("later", i, queue=name, delay=3600) for i in range(5)])
        broker.run(broker.ops.claim(name, 2, "bench-worker"))
    _seed_history(broker, names)
    app.close()
    return ids


def _error(name: str) -> bytes:
    return encode_error(ValueError(f"{name}: the upstream answered 502"), TRACEBACK)


def _seed_history(broker: SyncBroker, names: list[str]) -> None:
    """A day of 10-second buckets as busy workers would have left them."""
    now = time.time()
    tally = Tally()
    # 10-second buckets for the last hour, then one a minute (the finer ones expire by then)
    ages = [*range(0, 3600, FINE.step), *range(3600, 24 * 3600, 60)]
    for age in ages:
        at = now - age
        for name in names[:10]:
            tally.outcome(at, name, "job", "succeeded")
            tally.latency(at, name, "run", 0.02)
            tally.latency(at, name, "wait", 0.004)
        if age % 3600 == 0:
            broker.execute(flush_calls(broker.ops.keys, tally.take()))
    broker.execute(flush_calls(broker.ops.keys, tally.take()))


def requests(dead_ids: list[str], queues: int) -> dict[str, str]:
    """Every request the pages make, by what it is for."""
    a_dead_letter = dead_ids[len(dead_ids) // 2]
    middle = f"queue-{queues // 2:03d}"
    return {
        "page shell": "/",
        "overview": "/api/overview",
        "history 15m": "/api/history?window=15m",
        "history 24h (cached)": "/api/history?window=24h",
        "workers": "/api/workers",
        "queue, pending": f"/api/queues/{middle}?state=pending",
        "queue, dead, newest": f"/api/queues/{middle}?state=dead&order=newest",
        "task": f"/api/tasks/{a_dead_letter}",
        "dead letters, page 1": "/api/dead",
        "dead letters, middle page": f"/api/dead?offset={max(0, len(dead_ids) // 2 - 50)}",
        "dead letters by task name": "/api/dead?task=task-3",
        "dead letters by error text (all match)": "/api/dead?text=upstream%20answered",
        "dead letters by error text (1 in 7)": "/api/dead?text=task-3%3A",
        "dead letters by age": "/api/dead?max_age=3600",
        "audit log": "/api/audit",
        "seed /stats": "/stats",
    }


def time_requests(base: str, paths: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:
    """Median, p95 and max milliseconds of each request."""
    out: dict[str, dict[str, float]] = {}
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        started = time.perf_counter()
        assert client.get("/api/history?window=24h").status_code == 200
        out["history 24h (first, cold)"] = {"median_ms": (time.perf_counter() - started) * 1000}
        for what, path in paths.items():
            samples = []
            for _ in range(repeats):
                started = time.perf_counter()
                answer = client.get(path)
                samples.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.text[:200])
            samples.sort()
            out[what] = {
                "median_ms": round(statistics.median(samples), 1),
                "p95_ms": round(samples[max(0, round(len(samples) * 0.95) - 1)], 1),
                "max_ms": round(samples[-1], 1),
            }
    return out


@click.command()
@click.option("--queues", default=100, show_default=True)
@click.option("--dead", default=10_000, show_default=True)
@click.option("--repeats", default=20, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path))
def main(queues: int, dead: int, repeats: int, json_path: Path | None) -> None:
    """Time the dashboard's answers on a seeded deployment."""
    with RedisServer() as server:
        started = time.perf_counter()
        dead_ids = seed(server.url, queues, dead)
        print(f"seeded {queues} queues, {len(dead_ids)} dead letters and a day of history "
              f"in {time.perf_counter() - started:.1f}s", file=sys.stderr)  # fmt: skip
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        command = [sys.executable, "-m", "conveyor", "--redis-url", server.url,
                   "dashboard", "--port", str(port)]  # fmt: skip
        process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for(base)
            figures = time_requests(base, requests(dead_ids, queues), repeats)
        finally:
            process.terminate()
            process.wait(10)
    result = {"queues": queues, "dead_letters": len(dead_ids), "repeats": repeats,
              "requests": figures}  # fmt: skip
    width = max(len(k) for k in figures)
    for what, f in figures.items():
        extra = f"  p95 {f['p95_ms']:7.1f}  max {f['max_ms']:7.1f}" if "p95_ms" in f else ""
        print(f"{what:<{width}}  median {f['median_ms']:7.1f} ms{extra}")
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n")


def _wait_for(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/stats", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the dashboard did not answer")


if __name__ == "__main__":
    main()
