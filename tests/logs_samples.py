"""Synthetic inference traffic for the logs tests and benchmarks (`bench/bench_logs.py` puts
tests/ on its path): reproducible from a seed, and shaped like real traffic (a few models, many
users, skewed latencies, some errors, tokens on chat requests only). Test data, so it lives
beside the tests, not in the service's package."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from services.logs.aggregate import LogRecord
from services.logs.events import InferenceLogged

MODELS = [f"model-{i}" for i in range(6)]
USERS = [f"user-{i}" for i in range(25)]
TYPES = ["infer", "chat", "embedding"]
TAGS = ["prod", "canary", "batch", "eval"]
START = datetime(2026, 3, 1, tzinfo=UTC)


def inference_event(
    rng: random.Random, space: str, *, span_s: float = 6 * 3600, start: datetime = START
) -> InferenceLogged:
    failed = rng.random() < 0.07
    chat = rng.random() < 0.6
    return InferenceLogged(
        space=space,
        endpoint=f"ep-{rng.randrange(3)}",
        model=rng.choice(MODELS),
        version=str(rng.randrange(1, 4)),
        user=rng.choice(USERS),
        status="error" if failed else "success",
        type=rng.choice(TYPES),
        tags=rng.sample(TAGS, rng.randrange(0, 3)),
        latency_ms=round(rng.lognormvariate(3.5, 1.1), 3),
        request_bytes=rng.randrange(100, 5000),
        response_bytes=rng.randrange(100, 20000),
        tokens_in=rng.randrange(1, 2000) if chat else None,
        tokens_out=rng.randrange(1, 800) if chat else None,
        correlation_id=f"req-{rng.randrange(10**9)}",
        error="upstream timeout" if failed else None,
        time=start + timedelta(seconds=rng.random() * span_s),
    )


def records(n: int, space: str = "space-1", seed: int = 7, **kwargs) -> list[LogRecord]:
    rng = random.Random(seed)
    return [
        LogRecord.of(
            f"log-{seed}-{i}", inference_event(rng, space, **kwargs).model_dump(), offset=i
        )
        for i in range(n)
    ]


def random_filters(
    rng: random.Random, space: str, span_s: float = 6 * 3600, start: datetime = START
) -> dict:
    """A random combination of the seed's filters (as route query parameters)."""
    chosen: dict = {}
    if rng.random() < 0.7:
        a, b = sorted(rng.uniform(-600, span_s + 600) for _ in range(2))
        chosen["start_date"] = start + timedelta(seconds=a)
        chosen["end_date"] = start + timedelta(seconds=b)
    elif rng.random() < 0.5:
        chosen["end_date"] = start + timedelta(seconds=rng.uniform(0, span_s))
    for name, values in (
        ("model", MODELS),
        ("user", USERS),
        ("type", TYPES),
        ("status", ["success", "error"]),
    ):
        if rng.random() < 0.35:
            chosen[name] = rng.choice(values)
    if rng.random() < 0.15:
        chosen["tag"] = rng.choice(TAGS)
    return chosen
