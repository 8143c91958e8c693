"""The log store contract, run against every adapter (SQLite, MongoDB on FerretDB): queries
agree with the filters' definition, summaries with a fold of the raw logs, and every log counts
exactly once however its batch is redelivered."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from logs_samples import START, random_filters, records
from mlplane.adapters import mongo_database

from services.logs.aggregate import Period, fold_by_model
from services.logs.store import LogFilters, LogStore
from services.logs.store.base import INPROC
from services.logs.store.mongo import MongoLogStore
from services.logs.store.sqlite import SQLiteLogStore

SPACE = "space-1"
SOURCE = "mlplane.inference/0"
LATER = START + timedelta(days=2)
ADAPTERS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mongo", id="mongo", marks=pytest.mark.mongo),
]


@pytest.fixture(params=ADAPTERS)
async def store(
    request: pytest.FixtureRequest, unique: str, tmp_path: Path
) -> AsyncIterator[LogStore]:
    if request.param == "sqlite":
        opened: LogStore = SQLiteLogStore(str(tmp_path / "logs.db"))
        db = None
    else:
        db = mongo_database(request.getfixturevalue("mongo_url"))
        opened = MongoLogStore(db, unique)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
        if db is not None:
            for name in await db.list_collection_names():
                if name.startswith(unique):
                    await db.drop_collection(name)
            db.client.close()


async def total(store: LogStore, space: str = SPACE) -> int:
    everything = LogFilters(space)
    stats = await store.summary(everything, Period.covering(None, LATER, LATER))
    return sum(s.calls for s in stats.values())


async def test_logs_come_back_newest_first_a_page_at_a_time(store: LogStore):
    logs = records(120)
    await store.ingest(SOURCE, logs)
    newest = sorted(logs, key=lambda r: (r.ts, r.id), reverse=True)
    count, first = await store.logs(LogFilters(SPACE), limit=50)
    _, third = await store.logs(LogFilters(SPACE), skip=100, limit=50)
    assert count == 120
    assert [r.id for r in first] == [r.id for r in newest[:50]]
    assert [r.id for r in third] == [r.id for r in newest[100:]]
    assert first[0] == replace(newest[0], offset=-1)


async def test_one_log_is_found_by_its_id_in_its_own_space_only(store: LogStore):
    logs = records(20)
    await store.ingest(SOURCE, logs)
    assert await store.log(logs[7].space, logs[7].id) == replace(logs[7], offset=-1)
    assert await store.log("space-2", logs[7].id) is None
    assert await store.log(logs[7].space, "no-such-log") is None


async def test_every_filter_selects_what_its_definition_selects(store: LogStore):
    logs = records(300) + records(30, space="space-2", seed=9)
    await store.ingest(SOURCE, logs)
    rng = random.Random(11)
    for _ in range(12):
        chosen = random_filters(rng, SPACE)
        filters = LogFilters(
            SPACE,
            start=chosen.get("start_date"),
            end=chosen.get("end_date"),
            **{k: v for k, v in chosen.items() if k not in ("start_date", "end_date")},
        )
        expected = {r.id for r in logs if filters.matches(r)}
        assert {r.id for r in await store.all_logs(filters)} == expected, chosen


async def test_a_correlation_id_finds_every_log_of_one_request(store: LogStore):
    logs = [
        replace(r, correlation_id="req-42") if i % 40 == 0 else r
        for i, r in enumerate(records(200))
    ]
    await store.ingest(SOURCE, logs)
    count, found = await store.logs(LogFilters(SPACE, correlation_id="req-42"), limit=100)
    assert count == 5 and {r.id for r in found} == {r.id for r in logs[::40]}


async def test_the_summary_equals_a_fold_of_the_matching_raw_logs(store: LogStore):
    logs = records(300, span_s=2 * 86400)
    await store.ingest(SOURCE, logs)
    rng = random.Random(5)
    for _ in range(8):
        chosen = random_filters(rng, SPACE, span_s=2 * 86400)
        period = Period.covering(
            chosen.pop("start_date", None), chosen.pop("end_date", LATER), LATER
        )
        filters = LogFilters(SPACE, **chosen)
        expected = fold_by_model(r for r in logs if filters.within(period).matches(r))
        assert await store.summary(filters, period) == expected, chosen


async def test_a_redelivered_batch_counts_once_whatever_its_boundaries(store: LogStore):
    logs = records(120)
    await store.ingest(SOURCE, logs[:80])
    assert await store.ingest(SOURCE, logs[60:120]) == 40
    assert await store.ingest(SOURCE, logs) == 0
    assert await total(store) == 120 and await store.applied(SOURCE) == 119
    assert (await store.logs(LogFilters(SPACE)))[0] == 120


async def test_a_log_sent_twice_counts_once(store: LogStore):
    logs = records(100)
    resent = [replace(r, offset=100 + i) for i, r in enumerate(logs[:30])]
    await store.ingest(SOURCE, logs)
    assert await store.ingest(SOURCE, resent) == 0
    assert (
        await store.ingest(
            "mlplane.inference/1", [replace(r, offset=i) for i, r in enumerate(logs[:30])]
        )
        == 0
    )
    assert await total(store) == 100


async def test_in_process_logs_are_deduplicated_by_id(store: LogStore):
    logs = [replace(r, offset=-1) for r in records(50)]
    await store.ingest(INPROC, logs[:30])
    assert await store.ingest(INPROC, logs) == 20
    assert await total(store) == 50


async def test_sources_and_spaces_do_not_mix(store: LogStore):
    await store.ingest("mlplane.inference/0", records(40, seed=1))
    await store.ingest("mlplane.inference/1", records(60, seed=2))
    await store.ingest("mlplane.inference/2", records(10, space="space-2", seed=3))
    assert await total(store) == 100 and await total(store, "space-2") == 10
    assert await store.applied("mlplane.inference/1") == 59 and await store.applied("nowhere") == -1


async def test_purging_drops_old_raw_logs_and_keeps_the_summary(store: LogStore):
    logs = records(200)
    await store.ingest(SOURCE, logs)
    cutoff = START + timedelta(hours=3)
    gone = await store.purge(cutoff)
    assert gone == sum(r.time < cutoff for r in logs)
    count, _ = await store.logs(LogFilters(SPACE))
    assert count == 200 - gone and await total(store) == 200


async def test_an_empty_store_answers_empty(store: LogStore):
    assert await store.logs(LogFilters(SPACE)) == (0, [])
    assert await store.summary(LogFilters(SPACE, model="m"), Period(0, 3600)) == {}


@pytest.mark.mongo
async def test_a_batch_cut_short_anywhere_completes_once_when_redelivered(
    mongo_url: str, unique: str
):
    """MongoDB writes raw logs and buckets separately: a crash between or inside the bucket
    writes, then the batch redelivered, still counts every log once."""
    db = mongo_database(mongo_url)
    store = MongoLogStore(db, unique)
    logs = records(60, span_s=600)
    try:
        await store.ingest(SOURCE, logs[:20])
        real = store._buckets.bulk_write

        async def crash_halfway(ops, **kwargs):
            await real(ops[: len(ops) // 2], **kwargs)
            raise ConnectionError("killed mid-write")

        store._buckets.bulk_write = crash_halfway
        with pytest.raises(ConnectionError):
            await store.ingest(SOURCE, logs[10:50])
        store._buckets.bulk_write = real
        await store.ingest(SOURCE, logs[15:60])
        assert await total(store) == 60
        period = Period.covering(None, LATER, LATER)
        assert await store.summary(LogFilters(SPACE), period) == fold_by_model(logs)
    finally:
        for name in await db.list_collection_names():
            if name.startswith(unique):
                await db.drop_collection(name)
        db.client.close()


async def test_the_widest_period_a_datetime_holds_counts_every_log(store: LogStore):
    logs = records(40)
    await store.ingest(SOURCE, logs)
    first, last = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    widest = LogFilters(SPACE, start=first, end=last)
    period = Period.covering(first, last, LATER)
    count, _ = await store.logs(widest, limit=1)
    by_buckets = await store.summary(widest, period)
    tag = next(t for r in logs for t in r.tags)
    by_raw = await store.summary(replace(widest, tag=tag), period)
    assert count == len(logs) == sum(s.calls for s in by_buckets.values())
    assert sum(s.calls for s in by_raw.values()) == sum(tag in r.tags for r in logs)
    assert period.public()["period_end_date"] == "9999-12-31T23:59:00+00:00"
