"""The logs workers' policies, pure: what a webhook cursor does with each event of the log and
with a delivery's outcome, and how the ingest sorts one fetch into logs and parked messages."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from aiokafka.structs import TopicPartition
from logs_samples import inference_event
from mlplane.events import Envelope, registry

from services.logs import commands as c
from services.logs.delivery import Deliver, Redeliver, outcome, policy
from services.logs.events import (
    InferenceLogged,
    WebhookRedeliveryRequested,
    WebhookSubscriptionUpdated,
)
from services.logs.ingest import policy as ingest_policy
from services.training.events import DataModelCreated

SUBSCRIPTION = {"id": "sub-1", "space_id": "s1", "event_types": ["DataModel*"]}


def row(event, space: str = "s1", stream: str = "datamodel:d1"):
    return registry.to_stored(stream, event, space=space)


def created(name: str = "d") -> DataModelCreated:
    return DataModelCreated(data_model_id="d1", space_id="s1", name=name)


def test_an_event_of_the_space_and_types_is_delivered():
    assert policy(row(created()), "training", SUBSCRIPTION) == Deliver()


def test_an_event_of_another_space_is_never_delivered():
    assert policy(row(created(), space="s2"), "training", SUBSCRIPTION) is None


def test_an_event_of_another_type_is_skipped():
    assert policy(row(created()), "training", {**SUBSCRIPTION, "event_types": ["Space*"]}) is None


def test_no_types_means_every_type_but_the_webhook_bookkeeping_and_unknown_ones():
    every = {**SUBSCRIPTION, "event_types": []}
    bookkeeping = row(WebhookSubscriptionUpdated(subscription_id="sub-2"), stream="webhook:sub-2")
    assert policy(row(created()), "training", every) == Deliver()
    assert policy(bookkeeping, "webhooks", every) is None
    assert policy(row(created()), None, every) is None


def test_a_redelivery_asked_for_this_subscription_is_carried_out():
    asked = WebhookRedeliveryRequested(subscription_id="sub-1", event_id="ev-9")
    other = WebhookRedeliveryRequested(subscription_id="sub-2", event_id="ev-9")
    assert policy(row(asked, stream="webhook:sub-1"), "webhooks", SUBSCRIPTION) == Redeliver("ev-9")
    assert policy(row(other, stream="webhook:sub-2"), "webhooks", SUBSCRIPTION) is None


def envelope() -> Envelope:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    return Envelope("ev-1", "DataModelCreated", "datamodel:d1", created(), 1, 7, at, space="s1")


def test_a_failed_delivery_is_dead_lettered_and_a_delivered_one_asks_for_nothing():
    assert outcome("sub-1", envelope(), 1, None) == []
    (dead,) = outcome("sub-1", envelope(), 8, "HTTP 500 from the receiver")
    assert dead == c.DeadLetter(
        subscription_id="sub-1",
        event_id="ev-1",
        event_type="DataModelCreated",
        stream_id="datamodel:d1",
        position=7,
        attempts=8,
        error="HTTP 500 from the receiver",
    )


def message(offset: int, value: bytes, type_: bytes = InferenceLogged.type_name.encode()):
    headers = [("ce_type", type_), ("ce_id", f"log-{offset}".encode()), ("ce_typeversion", b"1")]
    return SimpleNamespace(offset=offset, value=value, headers=headers)


def test_a_fetch_becomes_logs_to_store_messages_to_park_and_offsets_past_both():
    import random

    tp = TopicPartition("mlplane.inference", 0)
    good = inference_event(random.Random(1), "s1").model_dump_json().encode()
    batch = ingest_policy(
        {tp: [message(4, good), message(5, b"{not json"), message(6, good, b"Other")]}
    )
    assert [r.id for r in batch.records[tp]] == ["log-4"]
    assert [
        (msg.offset, "not a valid" in why or "expected" in why) for _, msg, why in batch.bad
    ] == [
        (5, True),
        (6, True),
    ]
    assert batch.next == {tp: 7}


def test_an_empty_fetch_commits_nothing():
    assert ingest_policy({TopicPartition("t", 0): []}).next == {}
