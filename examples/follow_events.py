"""Follow mlplane's events from outside the platform: a Kafka consumer of its topics that reads
each message as a CloudEvent (binary mode) and prints it as one JSON line.

Nothing of mlplane is imported: any program that speaks Kafka can do the same. Run it beside a
platform started on Kafka (`MLPLANE_BUS_URL=kafka://127.0.0.1:9092 mlplane up`):

    python examples/follow_events.py                         # every mlplane topic, from now on
    python examples/follow_events.py --from-beginning --type 'Space*' --group my-auditor
    python examples/follow_events.py --topic mlplane.inference --max 10
    python examples/follow_events.py --prefix acme_          # the platform of MLPLANE_PREFIX=acme_

A platform started with `MLPLANE_PREFIX` names its topics `<prefix>mlplane.<context>`: --prefix
(default: $MLPLANE_PREFIX) follows that platform's topics and only them, and is put before each
--topic too (`--prefix acme_ --topic mlplane.inference` reads `acme_mlplane.inference`).

Each line is {"specversion", "id", "source", "type", "subject", "time", ..., "data"}: the `ce_*`
headers without their prefix, and the payload. With --group, the consumer group remembers how far
it read, so a restart continues there; messages can come twice after a crash, so a consumer that
acts on them keeps the ids it has handled (`id` is unique per event).
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import os
import re
import sys
import uuid

from aiokafka import AIOKafkaConsumer


def every_topic(prefix: str = "") -> str:
    """The topics of the platform named by `prefix`, except the dead-letter ones, as a regex."""
    return rf"^{re.escape(prefix)}mlplane\.(?!.*\.dlq$).*"


def cloudevent(message) -> dict:
    """The CloudEvent of one Kafka message in binary mode: `ce_*` headers and the JSON value."""
    headers = {key: value.decode() for key, value in message.headers or ()}
    event = {key[3:]: value for key, value in headers.items() if key.startswith("ce_")}
    event["datacontenttype"] = headers.get("content-type", "application/json")
    if "traceparent" in headers:
        event["traceparent"] = headers["traceparent"]
    event["data"] = json.loads(message.value) if message.value else None
    return event


async def follow(args: argparse.Namespace) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group or f"follow-events-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=True,
        metadata_max_age_ms=5000,  # topics created later are picked up within seconds
    )
    await consumer.start()
    try:
        if args.topic:
            consumer.subscribe(topics=[args.prefix + topic for topic in args.topic])
        else:
            consumer.subscribe(pattern=args.pattern)
        printed = 0
        async for message in consumer:
            event = cloudevent(message)
            if args.type and not any(
                fnmatch.fnmatchcase(event.get("type", ""), t) for t in args.type
            ):
                continue
            print(json.dumps({"topic": message.topic, **event}, default=str), flush=True)
            printed += 1
            if args.max and printed >= args.max:
                return
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument(
        "--topic", action="append", help="a topic to follow, without the prefix (repeatable)"
    )
    parser.add_argument(
        "--prefix",
        default=os.environ.get("MLPLANE_PREFIX", ""),
        help="the platform's MLPLANE_PREFIX (default: $MLPLANE_PREFIX, empty)",
    )
    parser.add_argument(
        "--pattern",
        help="topics to follow, as a regular expression (default: every topic of the platform)",
    )
    parser.add_argument(
        "--type", action="append", help="event types to print, globs allowed (repeatable)"
    )
    parser.add_argument("--group", help="consumer group, to resume where the last run stopped")
    parser.add_argument("--from-beginning", action="store_true", help="read what the topics retain")
    parser.add_argument("--max", type=int, default=0, help="stop after this many events")
    args = parser.parse_args()
    args.pattern = args.pattern or every_topic(args.prefix)
    re.compile(args.pattern)
    try:
        asyncio.run(follow(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
