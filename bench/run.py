"""`make bench`: every hot path against the raw driver in the same run, printed as one table.

Writes bench/results/latest.json as {"benchmarks": [{name, ratio, target, higher_is_better,
met, ours, raw, unit, detail}], "failed": {name: error}, "machine": {cpus, load averages at
start and end}} and prints the table at the end: ratios from a machine busy with other work
are worth less, so the load is kept with them.
Needs the local servers (`make services-up`).

MLPLANE_BENCH_SCALE multiplies every size (at least 100 of anything is kept); `--no-save`
leaves latest.json alone. `make bench-smoke` is both: each benchmark at a tiny size, to check
that it runs and reports, not what it reports. A benchmark that raises is reported as failed,
the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_append
import bench_bus
import bench_dataplane
import bench_gateway
import bench_growth
import bench_logs
import bench_rebuild
from common import Result

MONGO = os.environ.get("MLPLANE_BENCH_MONGO_URL", "mongodb://127.0.0.1:27017/mlplane_bench")
KAFKA = os.environ.get("MLPLANE_BENCH_KAFKA", "127.0.0.1:9092")
SCALE = float(os.environ.get("MLPLANE_BENCH_SCALE", "1"))
LATEST = Path(__file__).parent / "results" / "latest.json"


def n(count: int) -> int:
    return max(100, int(count * SCALE))


def benchmarks() -> list[tuple[str, Callable[[], Awaitable[Result | list[Result]]]]]:
    """Each benchmark by name, started only when its turn comes."""
    return [
        ("append.sqlite.batch1", lambda: bench_append.sqlite_append(n(5_000), 1)),
        ("append.sqlite.batch100", lambda: bench_append.sqlite_append(n(50_000), 100)),
        ("append.mongo.batch1", lambda: bench_append.mongo_append(MONGO, n(2_000), 1)),
        ("append.mongo.batch100", lambda: bench_append.mongo_append(MONGO, n(20_000), 100)),
        ("rebuild.sqlite", lambda: bench_rebuild.sqlite_rebuild(n(50_000))),
        ("rebuild.mongo", lambda: bench_rebuild.mongo_rebuild(MONGO, n(20_000))),
        (
            "growth.sqlite",
            lambda: bench_growth.sqlite_growth(n(1_000), n(100_000), n(1_000), n(500)),
        ),
        (
            "growth.mongo",
            lambda: bench_growth.mongo_growth(MONGO, n(1_000), n(100_000), n(100), n(100)),
        ),
        ("bus.kafka", lambda: bench_bus.kafka_bus(KAFKA, n(20_000))),
        ("dataplane", lambda: bench_dataplane.dataplane(n(2_000))),
        ("gateway.list_spaces", lambda: bench_gateway.gateway_list_spaces(n(3_000))),
        (
            "logs.kafka.ingest",
            lambda: bench_logs.kafka_ingest(KAFKA, n(100_000), faust_total=n(20_000)),
        ),
        ("logs.summary", lambda: bench_logs.summary_query(n(1_000_000))),
    ]


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def table(results: list[Result], failed: dict[str, str]) -> str:
    rows = [("name", "ours", "raw", "ratio", "target", "met")]
    for r in results:
        target = f"{'>=' if r.higher_is_better else '<='} {r.target:g}"
        rows.append(
            (
                r.name,
                _number(r.ours, r.unit),
                _number(r.raw, r.unit),
                f"{r.ratio:.3f}",
                target,
                "yes" if r.met else "NO",
            )
        )
    rows += [(name, "-", "-", "-", "-", "FAILED") for name in failed]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def main(save: bool) -> int:
    machine = {"cpus": os.cpu_count(), "load_average_1_5_15_min_at_start": _load()}
    results: list[Result] = []
    failed: dict[str, str] = {}
    for name, start in benchmarks():
        began = time.perf_counter()
        try:
            out = await start()
        except Exception as exc:  # noqa: BLE001 - reported in the table and the exit status
            traceback.print_exc()
            failed[name] = f"{type(exc).__name__}: {exc}"
            print(f"FAILED {name}: {failed[name]}", flush=True)
            continue
        done = out if isinstance(out, list) else [out]
        results += done
        for r in done:
            print(f"{'ok  ' if r.met else 'MISS'} {r.name:30} {r.detail}", flush=True)
        print(f"     ({name} took {time.perf_counter() - began:.1f}s)", flush=True)
    machine["load_average_1_5_15_min_at_end"] = _load()
    print()
    print(table(results, failed))
    print(f"machine: {machine}")
    if save:
        LATEST.parent.mkdir(parents=True, exist_ok=True)
        record = {"benchmarks": [r.record() for r in results], "failed": failed, "machine": machine}
        LATEST.write_text(json.dumps(record, indent=2) + "\n")
        print(f"written to {LATEST}")
    for name, error in failed.items():
        print(f"FAILED {name}: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-save", action="store_true", help="leave latest.json as it is")
    sys.exit(asyncio.run(main(save=not parser.parse_args().no_save)))
