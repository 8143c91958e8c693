"""A backbone process the integration tests start, kill with SIGKILL and start again.

    python backbone_proc.py append  --events URL --topic T --count N --streams S
        append N counter events over S streams, print "appended", then sleep (no relay).
    python backbone_proc.py relay   --events URL --topic T --bus kafka://... [--die-after-publishes K]
        run the outbox relay until it has published everything, print "relayed", exit.
        With --die-after-publishes K the process SIGKILLs itself right after its K-th publish,
        before the relay records its checkpoint. With --die-mid-send K (Kafka) it SIGKILLs itself
        while its K-th batch is on the way: every event of it was sent, the broker acknowledged
        the first record batches and not the rest, and the checkpoint is not recorded.
    python backbone_proc.py project --events URL [--readmodels URL]
        run the counter projection (a follower of the log) forever.
    python backbone_proc.py consume --readmodels URL --topic T --bus kafka://... --group G
        consume the topic from Kafka and fold each event into the counter read model.

The tests import the event type, the projection and `expected_totals` from here too.
Every process prints one line per milestone and flushes, so a test can wait on its output.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Iterable

from mlplane import adapters
from mlplane.bus import Bus
from mlplane.bus.kafka import KafkaBus
from mlplane.eventlog import EventLog
from mlplane.events import Envelope, Event, EventRegistry, StoredEvent
from mlplane.outbox import OutboxRelay
from mlplane.projections import Projection, ProjectionRunner
from mlplane.readmodels import Doc, ReadModelStore, Write
from pydantic import BaseModel

EVENT_TYPE = "CounterIncremented"


def counter_registry(topic: str) -> EventRegistry:
    """A registry holding only the counter event, published on `topic`."""
    registry = EventRegistry()

    @registry.register(EVENT_TYPE, topic=topic)
    class CounterIncremented(Event):
        by: int

    return registry


def counter_event(registry: EventRegistry, by: int) -> BaseModel:
    return registry.model(EVENT_TYPE)(by=by)


class CounterTotals(Projection):
    """Per stream: how many events were folded, their sum, the last version, and how many
    arrived out of stream order. A lost event shows in `count`, a twice-applied one too."""

    name = "counter_totals"
    handles = frozenset({EVENT_TYPE})

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc:
        doc = doc or {"count": 0, "sum": 0, "last": 0, "out_of_order": 0}
        return {
            "count": doc["count"] + 1,
            "sum": doc["sum"] + event.data.by,
            "last": event.version,
            "out_of_order": doc["out_of_order"] + (event.version != doc["last"] + 1),
        }


def stream_of(i: int, streams: int) -> str:
    return f"counter-{i % streams}"


def amount(i: int) -> int:
    return i % 7 + 1


def expected_totals(count: int, streams: int) -> dict[str, dict[str, int]]:
    """What `CounterTotals` holds once events 0..count-1 of `append` are folded exactly once."""
    out: dict[str, dict[str, int]] = {}
    for i in range(count):
        doc = out.setdefault(
            stream_of(i, streams), {"count": 0, "sum": 0, "last": 0, "out_of_order": 0}
        )
        doc["count"] += 1
        doc["sum"] += amount(i)
        doc["last"] = doc["count"]
    return out


def totals(docs: dict[str, Doc]) -> dict[str, dict[str, int]]:
    return {k: {f: d[f] for f in ("count", "sum", "last", "out_of_order")} for k, d in docs.items()}


async def append_counters(
    log: EventLog, count: int, streams: int, per_append: int = 10, start: int = 0
) -> None:
    """Events start..count-1, event i on stream i % streams; each append holds up to
    `per_append` events of one stream, and appends to different streams interleave."""
    block = streams * per_append
    for first in range(start, count, block):
        for s in range(streams):
            items = [i for i in range(first, min(first + block, count)) if i % streams == s]
            if items:
                await log.append(
                    stream_of(items[0], streams),
                    [counter_event(log.registry, amount(i)) for i in items],
                    None,
                )


async def append_slowly(
    log: EventLog, count: int, streams: int, seconds: float, steps: int = 40
) -> None:
    """`append_counters` spread over about `seconds`, so followers always have work."""
    step = max(1, count // steps)
    for first in range(0, count, step):
        await append_counters(log, min(first + step, count), streams, start=first)
        await asyncio.sleep(seconds / steps)


class Proc:
    """This script run as a child process, for tests: start, wait for a line, SIGKILL."""

    def __init__(self, *args: str, log_path: str) -> None:
        self.args = [sys.executable, os.path.abspath(__file__), *args]
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Proc:
        with open(self.log_path, "ab") as log:  # noqa: ASYNC230 - opened once, handed to the child
            self.process = await asyncio.create_subprocess_exec(
                *self.args, stdout=asyncio.subprocess.PIPE, stderr=log
            )
        return self

    async def wait_for(self, marker: str, timeout: float = 60.0) -> None:
        """Read the child's output until a line equals `marker`; fail if it exits first."""
        assert self.process and self.process.stdout

        async def read() -> None:
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"{self.args[2:]} exited before {marker!r}: {self.tail()}")
                if line.decode().strip() == marker:
                    return

        await asyncio.wait_for(read(), timeout)

    async def exit_code(self, timeout: float = 60.0) -> int:
        """Wait for the child to exit (reading the rest of its output) and return its code."""
        assert self.process
        await asyncio.wait_for(self.process.communicate(), timeout)
        return self.process.returncode

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, no commit. A child already gone is left as it is."""
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.kill()
        await self.process.communicate()

    def tail(self, lines: int = 30) -> str:
        with open(self.log_path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])


async def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[tuple[str, str]]:
    """Every message on `topic` up to its current end, as (ce_id, ce_subject), in each
    partition's order (read raw, as any CloudEvents consumer would)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[tuple[str, str]] = []

        async def drain() -> None:
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                for msgs in (await consumer.getmany(timeout_ms=200)).values():
                    for msg in msgs:
                        headers = dict(msg.headers)
                        out.append((headers["ce_id"].decode(), headers["ce_subject"].decode()))

        await asyncio.wait_for(drain(), timeout)
        return out
    finally:
        await consumer.stop()


def say(line: str) -> None:
    print(line, flush=True)


def open_log(events_url: str, prefix: str, topic: str) -> EventLog:
    store = adapters.event_store(events_url, prefix)
    keys = adapters.key_store(events_url.split("?", 1)[0], prefix)
    return EventLog(store, counter_registry(topic), keys)


async def cmd_append(args: argparse.Namespace) -> None:
    log = open_log(args.events, args.prefix, args.topic)
    await append_counters(log, args.count, args.streams)
    say("appended")
    await asyncio.Event().wait()


class DiesAfterPublishing(Bus):
    """Wraps a bus; the process dies (SIGKILL) right after the K-th publish returned."""

    def __init__(self, inner: Bus, publishes: int) -> None:
        super().__init__(inner.retry)
        self._inner, self._left = inner, publishes

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    async def publish(self, topic: str, events) -> None:
        await self._inner.publish(topic, events)
        self._left -= 1
        if self._left == 0:
            say("dying after publish")
            os.kill(os.getpid(), signal.SIGKILL)

    async def subscribe(self, group, topics, handler) -> None:
        await self._inner.subscribe(group, topics, handler)


class DiesMidSend(KafkaBus):
    """A Kafka bus whose process dies (SIGKILL) during its K-th send: once the broker has
    acknowledged the first record batches of it and before it has the others. Record batches
    of 1 KiB (a few events each) give each partition several, and the producer sends a
    partition's next batch only once the last one is acknowledged."""

    def __init__(self, bootstrap: str, sends: int) -> None:
        super().__init__(
            bootstrap, client_id="relay-proc", producer_options={"max_batch_size": 1024}
        )
        self._left = sends

    async def send(self, batches):
        acks = await super().send(batches)
        self._left -= 1
        if self._left == 0:
            await asyncio.wait(acks, return_when=asyncio.FIRST_COMPLETED)
            say("dying mid-send")
            os.kill(os.getpid(), signal.SIGKILL)
        return acks


async def cmd_relay(args: argparse.Namespace) -> None:
    log = open_log(args.events, args.prefix, args.topic)
    docs = adapters.read_models(args.events.split("?", 1)[0], args.prefix)
    bus = adapters.bus(args.bus, client_id="relay-proc")
    if args.die_after_publishes:
        bus = DiesAfterPublishing(bus, args.die_after_publishes)
    if args.die_mid_send:
        bus = DiesMidSend(args.bus.removeprefix("kafka://"), args.die_mid_send)
    await bus.start()
    relay = OutboxRelay(log.store, docs, bus, log.registry, batch_size=args.batch_size)
    try:
        while await docs.get_checkpoint("outbox-relay") < await log.store.head_position():
            await relay.run_once()
        say("relayed")
    finally:
        await bus.stop()


async def cmd_project(args: argparse.Namespace) -> None:
    log = open_log(args.events, args.prefix, "unused")
    docs = adapters.read_models(args.readmodels or args.events.split("?", 1)[0], args.prefix)
    runner = ProjectionRunner(
        CounterTotals(), log, docs, {"batch_size": args.batch_size, "poll_interval": 0.05}
    )
    say("projecting")
    await runner.run()


async def fold_one(projection: Projection, docs: ReadModelStore, env: Envelope) -> None:
    """Apply one event to its document unless the document already reflects it."""
    key = projection.key(env)
    current = (await docs.get_many(projection.name, [key])).get(key)
    if current is not None and current["_pos"] >= env.position:
        return
    doc = {k: v for k, v in (current or {}).items() if k not in ("_key", "_pos")} or None
    await docs.put_many(projection.name, [Write(key, projection.evolve(doc, env), env.position)])


async def cmd_consume(args: argparse.Namespace) -> None:
    registry = counter_registry(args.topic)
    docs = adapters.read_models(args.readmodels, args.prefix)
    projection = CounterTotals()
    options = {"group_instance_id": args.instance} if args.instance else {}  # static membership
    bus = KafkaBus(
        args.bus.removeprefix("kafka://"), client_id="consume-proc", consumer_options=options
    )

    async def handle(row: StoredEvent) -> None:
        await fold_one(projection, docs, registry.decode(row))

    await bus.start()
    await bus.subscribe(args.group, [args.topic], handle)
    say("consuming")
    await asyncio.Event().wait()


def parse(argv: Iterable[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["append", "relay", "project", "consume"])
    parser.add_argument("--events", default="")
    parser.add_argument("--readmodels", default="")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--topic", default="mlplane.counters")
    parser.add_argument("--bus", default="inproc://")
    parser.add_argument("--group", default="counters")
    parser.add_argument("--instance", default="")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--die-after-publishes", type=int, default=0)
    parser.add_argument("--die-mid-send", type=int, default=0)
    return parser.parse_args(list(argv))


def main() -> None:
    args = parse(sys.argv[1:])
    command = {
        "append": cmd_append,
        "relay": cmd_relay,
        "project": cmd_project,
        "consume": cmd_consume,
    }
    asyncio.run(command[args.command](args))


if __name__ == "__main__":
    main()
