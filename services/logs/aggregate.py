"""The pure functions of inference-log summaries, shared by every ingest path and every store.

A summary bucket holds mergeable statistics of the logs of one (space, model, user, type,
status) in one time bucket: counts, integer sums (latency in microseconds, tokens, bytes), the
maximum latency and a fixed-bucket latency histogram. Merging is addition (and max), so buckets
fold in any order, from any partition, and the merge of buckets equals the fold of their logs.
Percentiles come from the merged histogram.

Buckets exist at three sizes (minute, hour, day): a summary over [start, end) sums the coarsest
buckets that tile the range, so a query reads a few rows per dimension combination however long
the range is. Ranges are whole minutes: start is floored and end ceiled to the minute, and the
answer says which period it covers.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from operator import add
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = 1_000_000

LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(10 ** (k / 6) for k in range(-6, 31))
"""Upper bounds of the histogram buckets: 0.1 ms to 100 s, six per decade (about +47% each).
Bucket i counts latencies in (bound[i-1], bound[i]]; one more bucket counts everything above."""
HIST_SIZE = len(LATENCY_BOUNDS_MS) + 1
_BOUNDS_US = tuple(b * 1000 for b in LATENCY_BOUNDS_MS)

MINUTE, HOUR, DAY = 60, 3600, 86400
LEVELS = (MINUTE, HOUR, DAY)
FAR_FUTURE = 253402300740  # 9999-12-31T23:59:00Z, the last whole minute a datetime holds
PERCENTILES = (50, 90, 95, 99)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(ts: int) -> datetime:
    return EPOCH + timedelta(microseconds=ts)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One inference log as the logs service keeps it; `offset` is its place in its source
    (a Kafka partition), -1 for a source without offsets."""

    id: str
    space: str
    endpoint: str
    model: str
    version: str
    user: str
    status: str
    type: str
    tags: tuple[str, ...]
    latency_ms: float
    request_bytes: int
    response_bytes: int
    tokens_in: int | None
    tokens_out: int | None
    correlation_id: str
    error: str | None
    ts: int
    """Epoch microseconds of the inference."""
    offset: int = -1

    @classmethod
    def of(cls, log_id: str, data: Mapping[str, Any], offset: int = -1) -> LogRecord:
        """From an `InferenceLogged` payload (validated model or its JSON data)."""
        moment = data["time"]
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        return cls(
            id=log_id,
            space=data["space"],
            endpoint=data["endpoint"],
            model=data["model"],
            version=data.get("version", ""),
            user=data.get("user", ""),
            status=data["status"],
            type=data.get("type", ""),
            tags=tuple(data.get("tags") or ()),
            latency_ms=float(data["latency_ms"]),
            request_bytes=data.get("request_bytes", 0),
            response_bytes=data.get("response_bytes", 0),
            tokens_in=data.get("tokens_in"),
            tokens_out=data.get("tokens_out"),
            correlation_id=data.get("correlation_id", ""),
            error=data.get("error"),
            ts=to_micros(moment),
            offset=offset,
        )

    @property
    def time(self) -> datetime:
        return from_micros(self.ts)

    @property
    def failed(self) -> bool:
        return self.status != "success"

    @property
    def latency_us(self) -> int:
        return round(self.latency_ms * 1000)

    def public(self) -> dict[str, Any]:
        """The log as the inference-logs route shows it."""
        out = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("ts", "offset")
        }
        out["tags"] = list(self.tags)
        out["time"] = self.time.isoformat()
        return out


LOG_FIELDS = tuple(f.name for f in fields(LogRecord))


def histogram_index(latency_us: int) -> int:
    return bisect.bisect_left(_BOUNDS_US, latency_us)


STAT_FIELDS = (
    "calls",
    "errors",
    "latency_us",
    "latency_max_us",
    "tokens_in",
    "tokens_out",
    "request_bytes",
    "response_bytes",
)


@dataclass(slots=True)
class Stats:
    """Mergeable statistics of a set of logs."""

    calls: int = 0
    errors: int = 0
    latency_us: int = 0
    latency_max_us: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * HIST_SIZE)

    def add(self, r: LogRecord) -> Stats:
        latency = r.latency_us
        self.calls += 1
        self.errors += r.failed
        self.latency_us += latency
        self.latency_max_us = max(self.latency_max_us, latency)
        self.tokens_in += r.tokens_in or 0
        self.tokens_out += r.tokens_out or 0
        self.request_bytes += r.request_bytes
        self.response_bytes += r.response_bytes
        self.hist[histogram_index(latency)] += 1
        return self

    def merge(self, other: Stats) -> Stats:
        self.calls += other.calls
        self.errors += other.errors
        self.latency_us += other.latency_us
        self.latency_max_us = max(self.latency_max_us, other.latency_max_us)
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.request_bytes += other.request_bytes
        self.response_bytes += other.response_bytes
        self.hist = list(map(add, self.hist, other.hist))
        return self

    def row(self) -> tuple[int, ...]:
        """The statistics as one flat row: the fields in STAT_FIELDS order, then the histogram."""
        return (*(getattr(self, name) for name in STAT_FIELDS), *self.hist)

    @classmethod
    def of_row(cls, row: Iterable[int]) -> Stats:
        values = [int(v or 0) for v in row]
        n = len(STAT_FIELDS)
        return cls(*values[:n], hist=values[n:])

    def percentile(self, q: float) -> float:
        """The q-th percentile latency in ms, interpolated inside its histogram bucket."""
        if not self.calls:
            return 0.0
        rank = q / 100 * self.calls
        seen = 0
        for i, count in enumerate(self.hist):
            if count and seen + count >= rank:
                low = _BOUNDS_US[i - 1] if i else 0.0
                high = _BOUNDS_US[i] if i < len(_BOUNDS_US) else self.latency_max_us
                high = min(high, self.latency_max_us)
                low = min(low, high)
                return round((low + (high - low) * (rank - seen) / count) / 1000, 3)
            seen += count
        return round(self.latency_max_us / 1000, 3)


def fold(records: Iterable[LogRecord]) -> Stats:
    stats = Stats()
    for r in records:
        stats.add(r)
    return stats


def fold_by_model(records: Iterable[LogRecord]) -> dict[str, Stats]:
    out: dict[str, Stats] = {}
    for r in records:
        out.setdefault(r.model, Stats()).add(r)
    return out


# ---------------------------------------------------------------- buckets

Dims = tuple[str, str, str, str, str]
"""(space, model, user, type, status)"""
BucketKey = tuple[int, int, str, str, str, str, str]
"""(level, bucket start in epoch seconds, *Dims)"""


def bucket_start(ts: int, level: int) -> int:
    seconds = ts // MICROS
    return seconds - seconds % level


def bucket_keys(r: LogRecord) -> list[BucketKey]:
    dims = (r.space, r.model, r.user, r.type, r.status)
    return [(level, bucket_start(r.ts, level), *dims) for level in LEVELS]


def bucket_deltas(records: Iterable[LogRecord]) -> dict[BucketKey, Stats]:
    """What `records` add to each summary bucket, at every level.

    Each log is folded into its minute bucket once; minute buckets are merged into the hour and
    day buckets that contain them (live traffic puts many logs in each minute bucket)."""
    minutes: dict[BucketKey, Stats] = {}
    for r in records:
        key = (MINUTE, bucket_start(r.ts, MINUTE), r.space, r.model, r.user, r.type, r.status)
        stats = minutes.get(key)
        if stats is None:
            stats = minutes[key] = Stats()
        stats.add(r)
    out: dict[BucketKey, Stats] = dict(minutes)
    for (_, start, *dims), stats in minutes.items():
        for level in LEVELS[1:]:
            key = (level, start - start % level, *dims)
            rolled = out.get(key)
            if rolled is None:
                out[key] = Stats().merge(stats)
            else:
                rolled.merge(stats)
    return out


def over_all_users(deltas: Mapping[BucketKey, Stats]) -> dict[tuple, Stats]:
    """The same buckets with users merged: keys (level, start, space, model, type, status)."""
    out: dict[tuple, Stats] = {}
    for (level, start, space, model, _user, type_, status), stats in deltas.items():
        key = (level, start, space, model, type_, status)
        merged = out.get(key)
        if merged is None:
            out[key] = Stats().merge(stats)
        else:
            merged.merge(stats)
    return out


def key_id(key: BucketKey, source: str = "") -> str:
    """A bucket key (and the source it counts) as one string id."""
    return json.dumps([*key, source] if source else list(key), separators=(",", ":"))


# ---------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    """[start, end) in whole minutes, epoch seconds; start 0 means "since the beginning"."""

    start: int
    end: int

    @classmethod
    def covering(cls, start: datetime | None, end: datetime | None, now: datetime) -> Period:
        """The whole minutes covering [start, end), within the epoch and year 9999."""
        low = min(max(to_micros(start) // MICROS if start else 0, 0), FAR_FUTURE)
        high = min(max(-(-to_micros(end or now) // MICROS), 0), FAR_FUTURE)
        return cls(low - low % MINUTE, -(-high // MINUTE) * MINUTE)

    @property
    def start_micros(self) -> int:
        return self.start * MICROS

    @property
    def end_micros(self) -> int:
        return self.end * MICROS

    def ranges(self) -> list[tuple[int, int, int]]:
        """(level, first bucket, end) triples whose buckets tile the period, coarsest inside."""
        return _tile(self.start, max(self.start, self.end), 0)

    def public(self) -> dict[str, str | None]:
        return {
            "period_start_date": from_micros(self.start_micros).isoformat() if self.start else None,
            "period_end_date": from_micros(self.end_micros).isoformat(),
        }


def _tile(start: int, end: int, i: int) -> list[tuple[int, int, int]]:
    if start >= end:
        return []
    level = LEVELS[i]
    if i == len(LEVELS) - 1:
        return [(level, start, end)]
    coarser = LEVELS[i + 1]
    inner_start = -(-start // coarser) * coarser
    inner_end = end - end % coarser
    if inner_start >= inner_end:
        return [(level, start, end)]
    head = [(level, start, inner_start)] if start < inner_start else []
    tail = [(level, inner_end, end)] if inner_end < end else []
    return head + _tile(inner_start, inner_end, i + 1) + tail


# ---------------------------------------------------------------- the answer


def usage(stats: Stats) -> dict[str, Any]:
    calls = stats.calls
    return {
        "calls": calls,
        "errors": stats.errors,
        "success_rate": round((calls - stats.errors) / calls, 6) if calls else 0.0,
        "avg_latency_ms": round(stats.latency_us / calls / 1000, 3) if calls else 0.0,
        "input_tokens": stats.tokens_in,
        "output_tokens": stats.tokens_out,
        "total_tokens": stats.tokens_in + stats.tokens_out,
    }


def report(by_model: Mapping[str, Stats], period: Period) -> dict[str, Any]:
    """The summary route's answer from statistics per model (seed 003's fields, and more)."""
    total = Stats()
    for stats in by_model.values():
        total.merge(stats)
    overall = usage(total)
    return {
        "total_calls": overall["calls"],
        "error_count": overall["errors"],
        "success_rate": overall["success_rate"],
        "avg_latency_ms": overall["avg_latency_ms"],
        "max_latency_ms": round(total.latency_max_us / 1000, 3),
        "latency_percentiles_ms": {f"p{q}": total.percentile(q) for q in PERCENTILES},
        "input_tokens": total.tokens_in,
        "output_tokens": total.tokens_out,
        "total_tokens": total.tokens_in + total.tokens_out,
        "request_bytes": total.request_bytes,
        "response_bytes": total.response_bytes,
        "model_usage": {
            model: usage(by_model[model]) for model in sorted(by_model) if by_model[model].calls
        },
        **period.public(),
        "bucket_seconds": MINUTE,
    }
