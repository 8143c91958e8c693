"""The log store port: the raw inference log and its summary buckets, written together.

Inference logs are too many to be event-store streams, so they get a store of their own with
the indexes their queries need. One `ingest` call takes the logs of one source (a Kafka
partition) in offset order and applies each exactly once:

- a log at or below the offset the store already applied for its source is skipped (a batch
  redelivered after a crash or a rebalance, even cut at other boundaries);
- a log whose id is stored already, from another place in the stream, is skipped (a producer
  that sent it twice); duplicates are recognised as long as the first copy is retained.

Each adapter keeps "what was applied" in the same write as what it applied: SQLite in one
transaction, MongoDB in every summary document (the offset of its source it reflects).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ..aggregate import LogRecord, Period, Stats, fold_by_model, from_micros, to_micros

INPROC = "inproc"
"""The source name of logs delivered by the in-process bus (no offsets)."""
DIMENSIONS = ("model", "user", "type", "status")
"""Filters a summary bucket can answer; the others (tag, correlation id) need the raw log."""


class StaleWrite(Exception):
    """Another writer changed a summary bucket since it was read: the batch is to be retried."""


@dataclass(frozen=True)
class LogFilters:
    """The seed's filters over the logs of one space; None means "not filtered"."""

    space: str
    start: datetime | None = None
    end: datetime | None = None
    user: str | None = None
    model: str | None = None
    status: str | None = None
    type: str | None = None
    tag: str | None = None
    correlation_id: str | None = None

    def dimensions(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in DIMENSIONS if getattr(self, name) is not None}

    @property
    def needs_raw(self) -> bool:
        return self.tag is not None or self.correlation_id is not None

    def within(self, period: Period) -> LogFilters:
        """The same filters over exactly `period`."""
        return replace(
            self, start=from_micros(period.start_micros), end=from_micros(period.end_micros)
        )

    def matches(self, r: LogRecord) -> bool:
        """The filters as a predicate: the definition every adapter's query must agree with."""
        start, end = _micros(self.start), _micros(self.end)
        return (
            r.space == self.space
            and (start is None or r.ts >= start)
            and (end is None or r.ts < end)
            and all(getattr(r, name) == want for name, want in self.dimensions().items())
            and (self.tag is None or self.tag in r.tags)
            and (self.correlation_id is None or r.correlation_id == self.correlation_id)
        )


def _micros(moment: datetime | None) -> int | None:
    return None if moment is None else to_micros(moment)


class LogStore(abc.ABC):
    async def open(self) -> None:
        """Create tables, collections and indexes."""

    @abc.abstractmethod
    async def ingest_many(self, batches: Mapping[str, Sequence[LogRecord]]) -> int:
        """Apply the logs of each source (in offset order), exactly once; return how many were new."""

    async def ingest(self, source: str, records: Sequence[LogRecord]) -> int:
        return await self.ingest_many({source: records})

    @abc.abstractmethod
    async def applied(self, source: str) -> int:
        """The highest offset of `source` applied so far (-1 if none)."""

    @abc.abstractmethod
    async def logs(
        self, filters: LogFilters, *, skip: int = 0, limit: int = 20
    ) -> tuple[int, list[LogRecord]]:
        """The number of matching logs and one page of them, newest first."""

    @abc.abstractmethod
    async def log(self, space: str, log_id: str) -> LogRecord | None:
        """One log of `space` by its id (None: unknown, expired, or another space's)."""

    @abc.abstractmethod
    async def bucket_stats(
        self, space: str, level: int, first: int, end: int, dimensions: Mapping[str, Any]
    ) -> dict[str, Stats]:
        """Merged statistics per model of the buckets of one level starting in [first, end)."""

    @abc.abstractmethod
    async def purge(self, before: datetime) -> int:
        """Delete raw logs older than `before`; summaries stay. Returns how many went."""

    async def close(self) -> None:
        """Release connections."""

    async def summary(self, filters: LogFilters, period: Period) -> dict[str, Stats]:
        """Statistics per model of the logs matching `filters` in `period`.

        From the summary buckets, or from the raw log when a filter is not a bucket dimension
        (tag, correlation id: a few logs, within the retention window).
        """
        if filters.needs_raw:
            return fold_by_model(await self.all_logs(filters.within(period)))
        out: dict[str, Stats] = {}
        for level, first, end in period.ranges():
            found = await self.bucket_stats(filters.space, level, first, end, filters.dimensions())
            for model, stats in found.items():
                out[model] = out[model].merge(stats) if model in out else stats
        return out

    @abc.abstractmethod
    async def all_logs(self, filters: LogFilters) -> list[LogRecord]:
        """Every matching log, in no particular order (raw summaries, checks)."""
