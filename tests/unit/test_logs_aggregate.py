"""The pure summary functions: buckets merge like the logs they fold, periods tile exactly."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from logs_samples import records

from services.logs.aggregate import (
    DAY,
    HOUR,
    LEVELS,
    MINUTE,
    Period,
    Stats,
    bucket_deltas,
    fold,
    fold_by_model,
    over_all_users,
    report,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_merging_buckets_equals_folding_their_logs():
    logs = records(2000, span_s=3 * DAY)
    merged = Stats()
    for (level, *_), stats in bucket_deltas(logs).items():
        if level == HOUR:
            merged.merge(stats)
    assert merged == fold(logs)


def test_merge_order_does_not_matter():
    logs = records(500)
    parts = [fold(logs[i::7]) for i in range(7)]
    forward, backward = Stats(), Stats()
    for p in parts:
        forward.merge(p)
    for p in reversed(parts):
        backward.merge(p)
    assert forward == backward == fold(logs)


def test_every_log_lands_in_one_bucket_per_level():
    logs = records(300)
    deltas = bucket_deltas(logs)
    for level in LEVELS:
        assert sum(s.calls for (lv, *_), s in deltas.items() if lv == level) == 300


def test_percentiles_come_from_the_histogram_within_a_bucket_width():
    rng = random.Random(3)
    logs = [replace(r, latency_ms=rng.lognormvariate(3, 1)) for r in records(5000)]
    stats = fold(logs)
    exact = sorted(r.latency_ms for r in logs)
    for q in (50, 90, 99):
        true = exact[int(q / 100 * len(exact)) - 1]
        assert abs(stats.percentile(q) - true) / true < 0.47
    assert stats.percentile(100) <= stats.latency_max_us / 1000


def test_a_period_is_whole_minutes_covering_the_request():
    period = Period.covering(T0 + timedelta(seconds=90.5), T0 + timedelta(minutes=5, seconds=1), T0)
    assert period.public() == {
        "period_start_date": (T0 + timedelta(minutes=1)).isoformat(),
        "period_end_date": (T0 + timedelta(minutes=6)).isoformat(),
    }


def test_ranges_tile_a_period_with_the_coarsest_buckets_inside():
    start = T0 + timedelta(days=1, hours=22, minutes=57)
    end = T0 + timedelta(days=4, hours=2, minutes=3)
    period = Period.covering(start, end, end)
    ranges = period.ranges()
    covered = sorted((first, stop) for _, first, stop in ranges)
    assert covered[0][0] == period.start and covered[-1][1] == period.end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
    assert [level for level, *_ in ranges] == [MINUTE, HOUR, DAY, HOUR, MINUTE]
    assert all(first % level == 0 and stop % level == 0 for level, first, stop in ranges)


def test_an_open_start_reads_whole_days_from_the_beginning():
    end = T0 + timedelta(hours=5)
    assert Period.covering(None, end, end).ranges() == [
        (DAY, 0, int(T0.timestamp())),
        (HOUR, int(T0.timestamp()), int(end.timestamp())),
    ]


def test_the_report_has_the_seed_fields_and_usage_per_model():
    logs = records(400)
    answer = report(fold_by_model(logs), Period.covering(None, T0 + timedelta(days=1), T0))
    for name in (
        "avg_latency_ms",
        "input_tokens",
        "model_usage",
        "output_tokens",
        "period_end_date",
        "period_start_date",
        "success_rate",
        "total_calls",
        "total_tokens",
    ):
        assert name in answer
    assert answer["total_calls"] == 400
    assert sum(u["calls"] for u in answer["model_usage"].values()) == 400
    assert answer["total_tokens"] == sum((r.tokens_in or 0) + (r.tokens_out or 0) for r in logs)
    errors = sum(r.status == "error" for r in logs)
    assert answer["error_count"] == errors and answer["success_rate"] == round(1 - errors / 400, 6)


def test_an_empty_report_is_zeros():
    answer = report({}, Period(0, 600))
    assert (
        answer["total_calls"] == 0 and answer["success_rate"] == 0.0 and answer["model_usage"] == {}
    )


def test_buckets_over_all_users_add_up_to_the_buckets_per_user():
    deltas = bucket_deltas(records(1000))
    merged = over_all_users(deltas)
    assert len(merged) < len(deltas)
    for level in LEVELS:
        per_user, all_users = Stats(), Stats()
        for (lv, *_), stats in deltas.items():
            if lv == level:
                per_user.merge(stats)
        for (lv, *_), stats in merged.items():
            if lv == level:
                all_users.merge(stats)
        assert per_user == all_users
