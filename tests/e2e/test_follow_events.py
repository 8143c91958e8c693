"""examples/follow_events.py, the outside subscriber of docs/subscribers.md, reads the events the
platform publishes as CloudEvents."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest
from mlplane.bus.kafka import KafkaBus
from mlplane.events import registry

from services.gateway.events import SpaceCreated

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "follow_events.py"


async def test_the_example_subscriber_prints_each_event_as_a_cloudevent(
    kafka_bootstrap: str, unique: str
):
    topic = f"{unique}gateway"
    rows = [
        registry.to_stored(
            f"space:s{i}",
            SpaceCreated(space_id=f"s{i}", name="n", description="d", owner_id="u"),
            source="mlplane/gateway",
            space=f"s{i}",
            actor="u",
        ).at(1, i + 1)
        for i in range(2)
    ]
    bus = KafkaBus(kafka_bootstrap)
    await bus.start()
    try:
        await bus.publish(topic, rows)
    finally:
        await bus.stop()
    command = [
        sys.executable,
        str(EXAMPLE),
        "--bootstrap",
        kafka_bootstrap,
        "--topic",
        topic,
        "--from-beginning",
        "--type",
        "Space*",
        "--max",
        "2",
    ]
    process = await asyncio.create_subprocess_exec(*command, stdout=PIPE, stderr=PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert sorted(e["id"] for e in events) == sorted(r.id for r in rows)  # two streams: any order
    first = next(e for e in events if e["subject"] == "space:s0")
    assert (
        first["specversion"] == "1.0"
        and first["type"] == "SpaceCreated"
        and first["subject"] == "space:s0"
    )
    assert (
        first["space"] == "s0"
        and first["data"]["name"] == "n"
        and first["datacontenttype"] == "application/json"
    )


def test_the_example_follows_the_topics_of_one_platform_and_no_other():
    spec = importlib.util.spec_from_file_location("follow_events", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    blue = re.compile(example.every_topic("blue_"))
    assert blue.match("blue_mlplane.gateway") and blue.match("blue_mlplane.inference")
    assert not blue.match("blue_mlplane.gateway.dlq")
    assert not blue.match("mlplane.gateway") and not blue.match("green_mlplane.gateway")
    unprefixed = re.compile(example.every_topic(""))
    assert unprefixed.match("mlplane.gateway") and not unprefixed.match("blue_mlplane.gateway")


async def test_the_example_reads_the_platform_its_prefix_names(kafka_bootstrap: str, unique: str):
    rows = [
        registry.to_stored(
            f"space:p{i}",
            SpaceCreated(space_id=f"p{i}", name="n", description="d", owner_id="u"),
            source="mlplane/gateway",
        ).at(1, i + 1)
        for i in range(2)
    ]
    bus = KafkaBus(kafka_bootstrap, prefix=f"{unique}blue_")
    await bus.start()
    try:
        await bus.publish("mlplane.gateway", rows)
    finally:
        await bus.stop()
    command = [sys.executable, str(EXAMPLE), "--bootstrap", kafka_bootstrap]
    command += ["--prefix", f"{unique}blue_", "--from-beginning", "--max", "2"]
    process = await asyncio.create_subprocess_exec(*command, stdout=PIPE, stderr=PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert sorted(e["id"] for e in events) == sorted(r.id for r in rows)
    assert {e["topic"] for e in events} == {f"{unique}blue_mlplane.gateway"}
