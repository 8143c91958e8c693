"""`make bench`: every hot path against the raw driver in the same run.

Writes bench/results/latest.json as {"benchmarks": [{name, ratio, target, higher_is_better,
detail}]} and prints a table. Needs the local servers (`make services-up`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_append
import bench_bus
import bench_dataplane
import bench_gateway
import bench_logs
import bench_rebuild

MONGO = os.environ.get("MLPLANE_BENCH_MONGO_URL", "mongodb://127.0.0.1:27017/mlplane_bench")
KAFKA = os.environ.get("MLPLANE_BENCH_KAFKA", "127.0.0.1:9092")
SCALE = float(os.environ.get("MLPLANE_BENCH_SCALE", "1"))


def n(count: int) -> int:
    return max(100, int(count * SCALE))


async def main() -> None:
    results = [
        await bench_append.sqlite_append(n(5_000), 1),
        await bench_append.sqlite_append(n(50_000), 100),
        await bench_append.mongo_append(MONGO, n(2_000), 1),
        await bench_append.mongo_append(MONGO, n(20_000), 100),
        await bench_rebuild.sqlite_rebuild(n(50_000)),
        await bench_rebuild.mongo_rebuild(MONGO, n(20_000)),
        *await bench_bus.kafka_bus(KAFKA, n(20_000)),
        *await bench_dataplane.dataplane(n(2_000)),
        await bench_gateway.gateway_list_spaces(n(3_000)),
        await bench_logs.kafka_ingest(KAFKA, n(100_000), faust_total=n(20_000)),
        await bench_logs.summary_query(n(1_000_000)),
    ]
    out = Path(__file__).parent / "results" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmarks": [r.record() for r in results]}, indent=2) + "\n")
    for r in results:
        verdict = "ok " if (r.ratio >= r.target) == r.higher_is_better else "MISS"
        print(f"{verdict} {r.name:28} ratio {r.ratio:6.2f}  target {r.target}  {r.detail}")
    print(f"written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
