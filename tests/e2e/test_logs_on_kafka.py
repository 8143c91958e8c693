"""`mlplane up` on Kafka: inference logs put on `mlplane.inference` the way the data plane puts
them reach the inference-logs routes through the platform's own ingest (a consumer group, a
writer process), with the same summary as a fold of what was sent."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from launcher import Platform, new_space
from logs_samples import inference_event
from mlplane.bus.kafka import KafkaBus

from services.logs.aggregate import LogRecord, Period, fold_by_model, report
from services.logs.ingest import publish_logs

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def on_kafka(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Platform]:
    group = f"e2e-logs-{time.time_ns()}"  # its own group: other platforms read the topic too
    env = {"MLPLANE_BUS_URL": f"kafka://{kafka_bootstrap}", "MLPLANE_LOGS_INGEST_GROUP": group}
    platform = Platform(Path(tmp_path_factory.mktemp("logs-on-kafka")), env)
    platform.start()
    yield platform
    platform.stop()


async def test_logs_sent_on_the_topic_are_listed_and_summarised(
    on_kafka: Platform, kafka_bootstrap: str
):
    with on_kafka.admin() as admin:
        space = new_space(admin, "analytics")
    rng = random.Random(5)
    start = datetime.now(UTC) - timedelta(hours=2)
    events = [inference_event(rng, space, span_s=3600, start=start) for _ in range(400)]
    bus = KafkaBus(kafka_bootstrap)
    await bus.start()
    try:
        ids = await publish_logs(bus, events, source="mlplane/gateway")
    finally:
        await bus.stop()
    sent = [LogRecord.of(i, e.model_dump()) for i, e in zip(ids, events, strict=True)]
    with on_kafka.admin() as admin:
        deadline = time.monotonic() + 60
        while admin.get("/api/v1/inference-logs", params={"space_id": space}).json()["count"] < len(
            sent
        ):
            assert time.monotonic() < deadline, "the logs did not reach the routes"
            await asyncio.sleep(0.3)
        listed = admin.get(
            "/api/v1/inference-logs", params={"space_id": space, "page_size": 5}
        ).json()
        summary = admin.get("/api/v1/inference-logs/summary", params={"space_id": space}).json()
    newest = max(sent, key=lambda r: (r.ts, r.id))
    assert listed["count"] == 400 and listed["has_more"] and listed["data"][0]["id"] == newest.id
    expected = report(fold_by_model(sent), Period.covering(None, None, datetime.now(UTC)))
    for name in (
        "total_calls",
        "error_count",
        "avg_latency_ms",
        "latency_percentiles_ms",
        "total_tokens",
        "model_usage",
    ):
        assert summary[name] == expected[name], name
