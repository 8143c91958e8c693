"""Shared pieces of the benchmarks: timing, the result record, the events used everywhere."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Self

from mlplane.events import Event, EventRegistry

registry = EventRegistry()


@registry.register("BenchRecorded", topic="bench")
class BenchRecorded(Event):
    """A small event shaped like the platform's: a few ids, a number, a label."""

    space: str
    model: str
    value: int
    label: str


def event(i: int) -> BenchRecorded:
    return BenchRecorded(space="space-1", model=f"model-{i % 50}", value=i, label="x" * 64)


@dataclass
class Result:
    """One benchmark's outcome: `ratio` is compared with `target`; `ours` and `raw` are the two
    measurements it comes from (in `unit`), where it comes from two."""

    name: str
    ratio: float
    target: float
    higher_is_better: bool
    detail: dict[str, Any]
    ours: float | None = None
    raw: float | None = None
    unit: str = ""

    @property
    def met(self) -> bool:
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = round(self.ratio, 3)
        for key in ("ours", "raw"):
            if out[key] is not None:
                out[key] = round(out[key], 3)
        out["met"] = self.met
        return out


class Timer:
    def __enter__(self) -> Self:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")
