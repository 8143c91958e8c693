"""logs: inference logs ingested into the raw log and the summary (Kafka mode) ÷ a raw aiokafka
consume loop over the same events in the same run; summary query latency over a large store.

The logs are timestamped like a live stream at the target rate (20k a second), 6 models, 25
users, 3 request types and two statuses: 900 summary keys. Both consumers read the same topic
(each its own group) and are timed from their first fetched batch to their last log, so joining
the group is left out of both. The raw loop decodes each
value's JSON and commits per batch, the least any consumer does; the ingest also validates each
log, writes it to the raw log and merges it into the summary buckets (SQLite store).

The same work on faust-streaming (bench/faust_logs.py, when installed) is timed on the same
topic and reported beside, as `faust_logs_per_s` and `faust_ratio`.

The query benchmark fills a store directly (no Kafka) with logs over 24 hours, then times the
summary of random filter combinations over random periods, as the route computes it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from common import Result, rate
from mlplane.bus.kafka import KafkaBus

from services.logs.aggregate import Period
from services.logs.ingest import KafkaIngest, publish_logs
from services.logs.store import LogFilters
from services.logs.store.sqlite import SQLiteLogStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from logs_samples import inference_event, random_filters, records

HERE = Path(__file__).resolve().parent
SPACE = "bench-space"
DAY_S = 86400.0
LIVE_RATE = 20_000


async def _publish(bootstrap: str, topic: str, total: int) -> None:
    rng = random.Random(1)
    span = total / LIVE_RATE  # timestamps of a live stream at the target rate
    start = datetime.now(UTC) - timedelta(seconds=span)
    bus = KafkaBus(bootstrap)
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        for first in range(0, total, 2000):
            logs = [
                inference_event(rng, SPACE, span_s=span, start=start)
                for _ in range(min(2000, total - first))
            ]
            await publish_logs(bus, logs, topic=topic)
    finally:
        await bus.stop()


async def _raw_consume(bootstrap: str, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen, first = 0, None
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            first = first or (time.perf_counter() if batches else None)
            for tp, msgs in batches.items():
                for msg in msgs:
                    json.loads(msg.value)
                seen += len(msgs)
                await consumer.commit({tp: msgs[-1].offset + 1})
    finally:
        await consumer.stop()
    return time.perf_counter() - first


async def _ingest(bootstrap: str, topic: str, total: int, folder: Path) -> float:
    store = SQLiteLogStore(str(folder / "ingest.db"), writer="process")
    await store.open()
    ingest = KafkaIngest(bootstrap, store, topic=topic, group=f"logs-{uuid.uuid4().hex}")
    started = time.perf_counter()  # the clock when a tiny run is done before the first poll
    task = asyncio.create_task(ingest.run())
    first = None
    try:
        while ingest.ingested < total:
            if task.done():
                task.result()
            if first is None and (ingest.ingested or not ingest._pending.empty()):
                first = time.perf_counter()
            await asyncio.sleep(0.002)
        return time.perf_counter() - (first or started)
    finally:
        ingest.stop()
        await task
        await store.close()


async def _faust(bootstrap: str, topic: str, total: int, folder: Path) -> float | str:
    """The same work on faust-streaming (bench/faust_logs.py): logs/s, or why it did not run."""
    if importlib.util.find_spec("faust") is None:
        return "faust-streaming is not installed (pip install -e '.[faust]')"
    env = {
        **os.environ,
        "BOOTSTRAP": bootstrap,
        "TOPIC": topic,
        "TOTAL": str(total),
        "STORE": str(folder / "faust.db"),
    }
    command = [sys.executable, str(HERE / "faust_logs.py"), "worker", "-l", "warn"]
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        cwd=folder,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 300)
    except TimeoutError:
        process.kill()
        return "faust did not finish within 300 s"
    found = re.search(rb"RATE (\d+)", out)
    return float(found.group(1)) if found else f"faust exited {process.returncode} without a rate"


async def kafka_ingest(bootstrap: str, total: int, faust_total: int | None = None) -> Result:
    topic = f"bench-{uuid.uuid4().hex[:8]}.inference"
    await _publish(bootstrap, topic, total)
    with tempfile.TemporaryDirectory() as folder:
        ours = await _ingest(bootstrap, topic, total, Path(folder))
        faust = await _faust(bootstrap, topic, faust_total or total, Path(folder))
    raw = await _raw_consume(bootstrap, topic, total)
    ours_rate, raw_rate = rate(total, ours), rate(total, raw)
    detail = {
        "logs": total,
        "ingest_logs_per_s": round(ours_rate),
        "raw_consume_per_s": round(raw_rate),
        "absolute_target_logs_per_s": 20_000,
        "absolute_target_met": ours_rate >= 20_000,
    }
    if isinstance(faust, float):
        detail.update(
            faust_logs=faust_total or total,
            faust_logs_per_s=round(faust),
            faust_ratio=round(faust / raw_rate, 3),
        )
    else:
        detail["faust"] = faust
    return Result(
        "logs.kafka.ingest",
        ours_rate / raw_rate,
        0.5,
        True,
        detail,
        ours=ours_rate,
        raw=raw_rate,
        unit="logs/s",
    )


async def summary_query(total: int, queries: int = 200) -> Result:
    """p95 of the summary over `total` logs spread over 24 hours (milliseconds, lower is better)."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteLogStore(str(Path(folder) / "query.db"))
        await store.open()
        try:
            t0 = time.perf_counter()
            for first in range(0, total, 20_000):
                batch = records(
                    min(20_000, total - first), space=SPACE, seed=first, span_s=DAY_S, start=start
                )
                await store.ingest(f"bench/{first}", batch)
            loaded = time.perf_counter() - t0
            rng = random.Random(3)
            now = start + timedelta(days=1)
            timings = []
            for _ in range(queries):
                chosen = random_filters(rng, SPACE, span_s=DAY_S, start=start)
                chosen.pop("tag", None)  # a tag is answered from the raw log, not the buckets
                period = Period.covering(
                    chosen.pop("start_date", None), chosen.pop("end_date", None), now
                )
                t = time.perf_counter()
                await store.summary(LogFilters(SPACE, **chosen), period)
                timings.append((time.perf_counter() - t) * 1000)
        finally:
            await store.close()
    p95 = statistics.quantiles(timings, n=20)[-1]
    return Result(
        "logs.summary.query_p95_ms",
        p95,
        50.0,
        False,
        {
            "logs": total,
            "queries": queries,
            "p50_ms": round(statistics.median(timings), 2),
            "p95_ms": round(p95, 2),
            "max_ms": round(max(timings), 2),
            "load_logs_per_s": round(total / loaded),
        },
        ours=p95,
        unit="ms",
    )
