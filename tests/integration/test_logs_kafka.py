"""Inference logs through Kafka into the log store: the summary of 100k logs agrees with a
brute-force computation over the raw logs for random filter combinations, and an ingest process
killed mid-stream (SIGKILL) loses no log and counts none twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from logs_samples import START, inference_event, random_filters
from mlplane.bus.kafka import KafkaBus

from services.logs.aggregate import LogRecord, Period, fold_by_model, report
from services.logs.ingest import KafkaIngest, log_rows
from services.logs.store import LogFilters, LogStore
from services.logs.store.sqlite import SQLiteLogStore

pytestmark = pytest.mark.kafka

SPACE = "space-k"
SPAN_S = 6 * 3600
LATER = START + timedelta(days=1)
ROOT = Path(__file__).resolve().parents[2]
TOTAL = 20_000


async def produce(
    bootstrap: str, topic: str, count: int, seed: int, resend: int = 0
) -> list[LogRecord]:
    """Publish `count` logs (and `resend` of them a second time); return what was published."""
    rng = random.Random(seed)
    events = [inference_event(rng, SPACE, span_s=SPAN_S) for _ in range(count)]
    rows = log_rows(events)
    bus = KafkaBus(bootstrap)
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        for first in range(0, count, 5000):
            await bus.publish(topic, rows[first : first + 5000])
        if resend:
            await bus.publish(topic, rng.sample(rows, resend))
    finally:
        await bus.stop()
    return [LogRecord.of(row.id, row.data) for row in rows]


async def until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout}s"
        await asyncio.sleep(0.1)


async def stored(store: LogStore) -> int:
    return (await store.logs(LogFilters(SPACE), limit=1))[0]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LogStore]:
    opened = SQLiteLogStore(str(tmp_path / "logs.db"))
    await opened.open()
    yield opened
    await opened.close()


async def test_the_summary_of_100k_logs_equals_brute_force_over_the_raw_logs(
    kafka_bootstrap: str, unique: str, tmp_path: Path
):
    topic = f"{unique}inference"
    published = await produce(kafka_bootstrap, topic, 100_000, seed=1)
    store = SQLiteLogStore(str(tmp_path / "logs.db"), writer="process")
    ingest = KafkaIngest(kafka_bootstrap, store, topic=topic, group=f"{unique}logs")
    task = asyncio.create_task(ingest.run())
    try:
        await until(lambda: _done(ingest, task, 100_000), 120, "100k logs ingested")
    finally:
        ingest.stop()
        await task
    try:
        await check_summaries(store, published)
    finally:
        await store.close()


async def check_summaries(store: LogStore, published: list[LogRecord]) -> None:
    everything = await store.all_logs(LogFilters(SPACE))
    assert sorted(r.id for r in everything) == sorted(r.id for r in published)
    rng = random.Random(20)
    for _ in range(20):
        chosen = random_filters(rng, SPACE, span_s=SPAN_S)
        period = Period.covering(
            chosen.pop("start_date", None), chosen.pop("end_date", LATER), LATER
        )
        filters = LogFilters(SPACE, **chosen)
        answer = report(await store.summary(filters, period), period)
        raw = await store.all_logs(filters.within(period))
        assert answer == report(fold_by_model(raw), period), (chosen, period)


async def _done(ingest: KafkaIngest, task: asyncio.Task, total: int) -> bool:
    if task.done():
        task.result()
    return ingest.ingested >= total


def start_ingest(
    bootstrap: str, topic: str, group: str, url: str, output: Path
) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLPLANE_LOGS_INGEST_SESSION_TIMEOUT_MS": "6000"}
    command = [
        sys.executable,
        "-m",
        "services.logs",
        "ingest",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--store",
        url,
        "--batch",
        "700",
    ]
    with output.open("a") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_an_ingest_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    kafka_bootstrap: str, unique: str, tmp_path: Path, store: LogStore
):
    topic, group, url = f"{unique}inference", f"{unique}logs", f"sqlite:///{tmp_path / 'logs.db'}"
    published = await produce(kafka_bootstrap, topic, TOTAL, seed=2, resend=1_000)
    output = tmp_path / "ingest.log"
    process = start_ingest(kafka_bootstrap, topic, group, url, output)
    try:
        await until(
            lambda: _above(store, TOTAL // 3, process, output), 60, "a third of the logs stored"
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert await stored(store) < TOTAL, "the kill came too late to interrupt anything"
    process = start_ingest(kafka_bootstrap, topic, group, url, output)
    try:
        await until(lambda: _above(store, TOTAL, process, output), 60, "every log stored")
        await asyncio.sleep(1.0)  # the resent copies come last; give them time to be skipped
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, output.read_text()
    period = Period.covering(None, LATER, LATER)
    assert await stored(store) == TOTAL
    assert await store.summary(LogFilters(SPACE), period) == fold_by_model(published)


async def _above(store: LogStore, count: int, process: subprocess.Popen, output: Path) -> bool:
    assert process.poll() is None, output.read_text()
    return await stored(store) >= count


async def test_what_is_not_a_log_is_parked_with_the_reason(
    kafka_bootstrap: str, unique: str, store: LogStore
):
    topic = f"{unique}inference"
    published = await produce(kafka_bootstrap, topic, 50, seed=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            b"{not json",
            key=b"x",
            headers=[("ce_id", b"bad-1"), ("ce_type", b"InferenceLogged")],
        )
        await producer.send_and_wait(
            topic, b"{}", key=b"y", headers=[("ce_id", b"bad-2"), ("ce_type", b"SpaceCreated")]
        )
    finally:
        await producer.stop()
    ingest = KafkaIngest(kafka_bootstrap, store, topic=topic, group=f"{unique}logs")
    task = asyncio.create_task(ingest.run())
    try:
        await until(lambda: _done(ingest, task, 50), 60, "the good logs stored")
        parked = await read_all(kafka_bootstrap, f"{topic}.dlq", 2)
    finally:
        ingest.stop()
        await task
    assert await stored(store) == len(published)
    reasons = {dict(m.headers)["ce_id"]: dict(m.headers)["ce_error"].decode() for m in parked}
    assert set(reasons) == {b"bad-1", b"bad-2"}
    assert (
        "not a valid InferenceLogged" in reasons[b"bad-1"] and "SpaceCreated" in reasons[b"bad-2"]
    )


async def read_all(bootstrap: str, topic: str, count: int) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        found: list = []
        deadline = time.monotonic() + 30
        while len(found) < count and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(msgs)
        return found
    finally:
        await consumer.stop()
