"""The inference-logs routes on the embedded platform: logs published on the bus are listed
with the seed's filters and pages, summarised like a fold of the listed logs, and kept to the
caller's spaces."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from logs_platform import Platform, platform
from logs_samples import inference_event, random_filters

from services.logs.aggregate import LogRecord, Period, fold_by_model, report
from services.logs.ingest import publish_logs
from services.logs.store import LogFilters

SPAN_S = 3 * 3600
PROBLEM = "application/problem+json"


@pytest.fixture
async def running(tmp_path, monkeypatch) -> AsyncIterator[Platform]:
    async with platform(tmp_path, monkeypatch) as p:
        yield p


def query(chosen: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in chosen.items()}


def filters_of(space: str, chosen: dict) -> LogFilters:
    dims = {k: v for k, v in chosen.items() if not k.endswith("_date")}
    return LogFilters(space, start=chosen.get("start_date"), end=chosen.get("end_date"), **dims)


async def seed(p: Platform, space: str, count: int, start: datetime) -> list[LogRecord]:
    rng = random.Random(len(space))
    events = [inference_event(rng, space, span_s=SPAN_S, start=start) for _ in range(count)]
    ids = await publish_logs(p.kernel.bus, events)
    return [LogRecord.of(i, e.model_dump()) for i, e in zip(ids, events, strict=True)]


async def test_logs_are_listed_newest_first_with_the_seed_filters_and_pages(running: Platform):
    space = await running.new_space()
    start = datetime.now(UTC) - timedelta(hours=4)
    logs = await seed(running, space, 300, start)
    rng = random.Random(4)
    for _ in range(8):
        chosen = random_filters(rng, space, span_s=SPAN_S, start=start)
        expected = sorted(
            (r for r in logs if filters_of(space, chosen).matches(r)),
            key=lambda r: (r.ts, r.id),
            reverse=True,
        )
        listed, page = [], 1
        while True:
            answer = await running.client.get(
                "/api/v1/inference-logs",
                headers={"X-Space-ID": space},
                params={**query(chosen), "page": page, "page_size": 40},
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["count"] == len(expected)
            listed += [item["id"] for item in body["data"]]
            if not body["has_more"]:
                break
            page += 1
        assert listed == [r.id for r in expected], chosen


async def test_the_summary_route_agrees_with_a_fold_of_the_listed_logs(running: Platform):
    space = await running.new_space()
    start = datetime.now(UTC) - timedelta(hours=4)
    logs = await seed(running, space, 400, start)
    rng = random.Random(9)
    now = datetime.now(UTC)
    for _ in range(8):
        chosen = random_filters(rng, space, span_s=SPAN_S, start=start)
        answer = await running.client.get(
            "/api/v1/inference-logs/summary", params={"space_id": space, **query(chosen)}
        )
        assert answer.status_code == 200, answer.text
        period = Period.covering(chosen.pop("start_date", None), chosen.pop("end_date", None), now)
        filters = LogFilters(space, **chosen).within(period)
        expected = report(fold_by_model(r for r in logs if filters.matches(r)), period)
        got = answer.json()
        assert got["period_end_date"] >= expected["period_end_date"]  # "now" moved on meanwhile
        assert {**got, "period_end_date": None} == {
            **_jsonable(expected),
            "period_end_date": None,
        }, chosen


def _jsonable(summary: dict) -> dict:
    return {
        k: v.replace("+00:00", "Z") if isinstance(v, str) and k.startswith("period") else v
        for k, v in summary.items()
    }


async def test_a_correlation_id_finds_every_log_of_one_request(running: Platform):
    space = await running.new_space()
    rng = random.Random(1)
    now = datetime.now(UTC)
    events = [
        inference_event(rng, space, span_s=60, start=now - timedelta(minutes=5)) for _ in range(30)
    ]
    events = [
        e.model_copy(update={"correlation_id": "req-7"}) if i % 10 == 0 else e
        for i, e in enumerate(events)
    ]
    await publish_logs(running.kernel.bus, events)
    listed = await running.client.get(
        "/api/v1/inference-logs", params={"space_id": space, "correlation_id": "req-7"}
    )
    summary = await running.client.get(
        "/api/v1/inference-logs/summary", params={"space_id": space, "correlation_id": "req-7"}
    )
    assert listed.json()["count"] == 3 and summary.json()["total_calls"] == 3


async def test_logs_stay_in_their_space(running: Platform):
    mine, theirs = await running.new_space("mine"), await running.new_space("theirs")
    start = datetime.now(UTC) - timedelta(hours=1)
    await seed(running, theirs, 20, start)
    async with await running.member_client(mine, "ann@example.com") as ann:
        own = await ann.get("/api/v1/inference-logs")
        foreign = [
            await ann.get(path, params={"space_id": theirs})
            for path in ("/api/v1/inference-logs", "/api/v1/inference-logs/summary")
        ]
    assert own.status_code == 200 and own.json()["count"] == 0
    assert [r.status_code for r in foreign] == [404, 404]
    assert all(r.headers["content-type"] == PROBLEM for r in foreign)


async def test_bad_filters_are_problems(running: Platform):
    space = await running.new_space()
    filters = [
        {"start_date": "yesterday"},
        {"status": "maybe"},
        {"start_date": "2026-03-02T00:00:00Z", "end_date": "2026-03-01T00:00:00Z"},
    ]
    pages = [{"page": 0}, {"page_size": 1000}]
    asked = [("/api/v1/inference-logs", p) for p in filters + pages]
    asked += [("/api/v1/inference-logs/summary", p) for p in filters]
    for path, params in asked:
        answer = await running.client.get(path, params={"space_id": space, **params})
        assert answer.status_code == 422, (path, params, answer.text)
        assert answer.headers["content-type"] == PROBLEM


async def test_dates_are_rfc_3339_with_an_offset_or_a_problem_naming_the_field(
    running: Platform,
):
    space = await running.new_space()
    not_dates = [
        "-1",
        "0.5",
        "1700000000",
        "2026-03-01",
        "2026-03-01T00:00:00",  # no offset: its zone would be a guess
        "2026-03-01 00:00:00Z",
        "2026-03-01T00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-03-01T00:00:00+24:00",
        "٢٠٢٦-03-01T00:00:00Z",  # not ASCII digits
    ]
    for path in ("/api/v1/inference-logs", "/api/v1/inference-logs/summary"):
        for name in ("start_date", "end_date"):
            for value in not_dates:
                answer = await running.client.get(path, params={"space_id": space, name: value})
                assert answer.status_code == 422, (path, name, value, answer.text)
                assert answer.headers["content-type"] == PROBLEM
                assert [e["field"] for e in answer.json()["errors"]] == [name], answer.text


async def test_the_first_and_last_dates_a_client_can_write_are_answered(running: Platform):
    space = await running.new_space()
    logs = await seed(running, space, 30, datetime.now(UTC) - timedelta(hours=4))
    tag = next(t for r in logs for t in r.tags)
    for start, end in (
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999-01:00"),
    ):
        dates = {"space_id": space, "start_date": start, "end_date": end}
        listed = await running.client.get("/api/v1/inference-logs", params=dates)
        summary = await running.client.get("/api/v1/inference-logs/summary", params=dates)
        tagged = await running.client.get(
            "/api/v1/inference-logs/summary", params={**dates, "tag": tag}
        )
        assert [listed.status_code, summary.status_code, tagged.status_code] == [200] * 3
        assert listed.json()["count"] == summary.json()["total_calls"] == len(logs)
        assert tagged.json()["total_calls"] == sum(tag in r.tags for r in logs)
        assert summary.json()["period_end_date"] == "9999-12-31T23:59:00Z"


async def test_an_offset_names_the_same_moment_as_utc(running: Platform):
    space = await running.new_space()
    logs = await seed(running, space, 60, datetime.now(UTC) - timedelta(hours=4))
    middle = sorted(r.ts for r in logs)[30]
    cut = datetime.fromtimestamp(middle // 1_000_000, UTC)
    counts = []
    for written in (cut.isoformat(), cut.astimezone(timezone(timedelta(hours=-5))).isoformat()):
        answer = await running.client.get(
            "/api/v1/inference-logs", params={"space_id": space, "end_date": written}
        )
        assert answer.status_code == 200, answer.text
        counts.append(answer.json()["count"])
    assert counts[0] == counts[1] == sum(r.ts < middle // 1_000_000 * 1_000_000 for r in logs)
