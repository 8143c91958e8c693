"""The inference-log ingest on faust-streaming, for `bench_logs` to measure against the plain
aiokafka consumer the logs service runs (see docs/logs.md for the outcome).

The agent does the same work with the same pure functions: each event is decoded
(`ingest.decode`) and written to the log store (raw log and summary buckets, 5000 at a time),
and its minute bucket is also kept where faust keeps state: a tumbling-window table backed by a
changelog topic. Faust changes a table only within the iteration of one event (its partition
picks the changelog's), so the table is updated event by event.

Run by the benchmark as `python bench/faust_logs.py worker`; once TOTAL logs are in, it prints
`RATE <logs/s>` (timed from the first event; faust routes prints to its log, on stderr) and exits.
Settings come from the environment: BOOTSTRAP, TOPIC, TOTAL, STORE (a SQLite path).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import faust

from services.logs.aggregate import MINUTE, Stats, bucket_start, key_id
from services.logs.ingest import BadLog, decode
from services.logs.store.sqlite import SQLiteLogStore

TOPIC, TOTAL = os.environ["TOPIC"], int(os.environ["TOTAL"])

app = faust.App(
    f"bench-faust-{TOPIC}",
    broker=f"kafka://{os.environ['BOOTSTRAP']}",
    store="memory://",
    topic_partitions=4,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    stream_buffer_maxsize=20_000,
)
logs = app.topic(TOPIC, value_serializer="raw", key_serializer="raw")
minutes = (
    app.Table("minutes", default=lambda: None, partitions=4)
    .tumbling(timedelta(seconds=MINUTE), expires=timedelta(hours=1))
    .relative_to_now()
)
store = SQLiteLogStore(os.environ["STORE"], writer="process")
state = {"seen": 0, "first": 0.0}


@app.agent(logs)
async def ingest(stream) -> None:
    pending: dict[str, list] = {}
    async for event in stream.events():
        state["first"] = state["first"] or time.perf_counter()
        state["seen"] += 1
        try:
            record = decode(event.message)
        except BadLog:
            continue
        pending.setdefault(f"{TOPIC}/{event.message.partition}", []).append(record)
        # a table is changed within the iteration of the event it belongs to (faust's rule)
        name = key_id(
            (
                MINUTE,
                bucket_start(record.ts, MINUTE),
                record.space,
                record.model,
                record.user,
                record.type,
                record.status,
            )
        )
        current = minutes[name].value()
        minutes[name] = (Stats.of_row(current) if current else Stats()).add(record).row()
        if state["seen"] % 5000 == 0 or state["seen"] >= TOTAL:
            await store.ingest_many(pending)
            pending = {}
        if state["seen"] >= TOTAL:
            print(f"RATE {TOTAL / (time.perf_counter() - state['first']):.0f}", flush=True)
            os._exit(0)


if __name__ == "__main__":
    app.main()
