"""`python -m services.logs ingest`: the inference-log ingest as a process of its own.

It reads the platform's settings (MLPLANE_BUS_URL must be kafka://, MLPLANE_LOGS_URL names the
store) and runs until SIGTERM or SIGINT; options override the settings, which is how a
deployment scales the ingest apart from the API, and how the tests kill it mid-stream.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from mlplane.settings import Settings

from .bootstrap import open_store
from .ingest import TOPIC, KafkaIngest
from .settings import LogsSettings


async def ingest(args: argparse.Namespace) -> None:
    settings, logs = Settings(), LogsSettings()
    bootstrap = args.bootstrap or settings.bus_url.removeprefix("kafka://").rstrip("/")
    if not bootstrap or bootstrap.startswith("inproc:"):
        raise SystemExit(
            "the ingest process needs Kafka: set MLPLANE_BUS_URL=kafka://host:port or --bootstrap"
        )
    url = args.store or logs.store_url(settings.readmodels_url, Path(settings.home))
    store = open_store(url, settings.prefix, writer="process")
    await store.open()
    worker = KafkaIngest(
        bootstrap,
        store,
        topic=args.topic,
        group=args.group or logs.ingest_group,
        prefix=settings.prefix,
        batch=args.batch or logs.ingest_batch,
        session_timeout_ms=logs.ingest_session_timeout_ms,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    print(f"ingest: {worker.topic} -> {url}", flush=True)
    try:
        await worker.run()
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.logs")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("ingest", help="consume inference logs into the log store")
    run.add_argument("--bootstrap", help="Kafka host:port (default: from MLPLANE_BUS_URL)")
    run.add_argument("--topic", default=TOPIC, help="topic, under MLPLANE_PREFIX like the group")
    run.add_argument("--group", help="consumer group (default: MLPLANE_LOGS_INGEST_GROUP)")
    run.add_argument(
        "--store", help="log store URL (default: MLPLANE_LOGS_URL or beside the event store)"
    )
    run.add_argument(
        "--batch", type=int, help="most logs per batch (default: MLPLANE_LOGS_INGEST_BATCH)"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(ingest(args))


if __name__ == "__main__":
    main()
