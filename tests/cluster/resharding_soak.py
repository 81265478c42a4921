"""The long resharding run: a busy queue's slot moved round the three masters many times
under load, on a Cluster of its own. The pytest suite runs one move
(tests/cluster/test_resharding.py); this is
`python -m tests.cluster.resharding_soak --migrations 30 --seconds 2`, which prints its
figures as JSON and exits 1 on any task lost, run twice or not enqueued, or any trouble
logged."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid

from conveyor.settings import Settings
from tests.cluster.conftest import CLUSTER_BINARY
from tests.cluster.resharding import reshard_under_load
from tests.support.cluster import LocalCluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--migrations", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=2.0, help="load between two moves")
    parser.add_argument(
        "--retention", type=float, default=2.0,
        help="seconds a succeeded task's record is kept: the slot's size, so each move's length",
    )  # fmt: skip
    args = parser.parse_args()
    if CLUSTER_BINARY is None:
        print("no redis-server for a Cluster", file=sys.stderr)
        return 2
    with LocalCluster(CLUSTER_BINARY) as cluster:
        # a slot split longer than MIGRATION_WAIT fails enqueues, and longer than a lease
        # runs a task twice (docs/redis-deployments.md): finished records expire soon, so
        # each move stays about as long as the CI test's, however many come before
        settings = Settings(redis_url=cluster.url, prefix="soak" + uuid.uuid4().hex[:8],
                            lease_timeout=10.0, succeeded_retention=args.retention)  # fmt: skip
        seen = asyncio.run(reshard_under_load(cluster, settings, args.migrations, args.seconds))
    violations = {
        "enqueue errors": seen.errors[:5],
        "not run": sorted(set(seen.enqueued) - set(seen.ran))[:5],
        "run twice": [i for i, n in seen.ran.items() if n > 1][:5],
        "run but not enqueued": sorted(set(seen.ran) - set(seen.enqueued))[:5],
        "troubles": seen.troubles[:5],
    }
    figures = {"enqueued": len(seen.enqueued), "ran": sum(seen.ran.values()),
               "keys moved": seen.moved, "workers": len(seen.workers)}  # fmt: skip
    print(json.dumps({**figures, **{k: v for k, v in violations.items() if v}}, indent=1))
    return 1 if any(violations.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
