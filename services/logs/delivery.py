"""Webhooks out: every live subscription is a cursor over the event log.

A cursor reads the log in global order from where it stopped (or from the subscription's start
position: a backfill), picks the events of its space and types, and POSTs each to the
subscription's URL as a CloudEvent in HTTP binary mode, signed (see `signing`). An event is
retried with exponential backoff (with jitter) before the cursor moves on, so the events of a
stream arrive in their order; one that exhausts its attempts is dead-lettered (an event on the
subscription's stream, listed by the API) and the cursor continues. The position is recorded
after each delivery, so a restart resumes where the cursor stopped: delivery is at least once,
and `webhook-id` (the event id) lets a receiver drop a repeat.

What is never sent: the logs service's own webhook bookkeeping (topic `webhooks`), events of
other spaces, and personal fields (sent as null; a receiver with the right can read them through
the API). Inference logs are not in the event log, so they are not delivered either.

A redelivery asked for through the API is an event on the subscription's stream too; the cursor
performs it when it reaches that event and records how it went.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib.metadata import version
from typing import Any

import httpx
from mlplane import aggregates
from mlplane.commands import Command
from mlplane.deps import in_space
from mlplane.egress import BlockedAddress
from mlplane.errors import UnknownEventType
from mlplane.eventlog import Context
from mlplane.events import Envelope, StoredEvent
from mlplane.kernel import Kernel
from mlplane.service import register_all_events

from . import commands as c
from .events import WEBHOOKS, WebhookRedeliveryRequested
from .handlers import SUBSCRIPTIONS
from .projections import SUBSCRIPTIONS as SUBSCRIPTION_DOCS
from .schemas import POSITION_MAX
from .settings import LogsSettings
from .signing import sign

log = logging.getLogger("mlplane.logs.webhooks")

BATCH = 200
REDELIVERY_ATTEMPTS = 3
USER_AGENT = f"mlplane-webhooks/{version('mlplane')}"
CTX = Context(actor="system", source="mlplane/logs")


@dataclass(frozen=True)
class Deliver:
    """Send the event to the subscription's URL."""


@dataclass(frozen=True)
class Redeliver:
    """Carry out the redelivery of a dead-lettered event the API asked for."""

    event_id: str


def policy(row: StoredEvent, topic: str | None, subscription: dict[str, Any]):
    """What a subscription's cursor does with one event of the log, pure: a redelivery asked
    for it, a delivery, or nothing (None). `topic` is the event type's topic (None: a type this
    process does not know). Never sent: other spaces' events and the webhook bookkeeping."""
    if (
        row.type == WebhookRedeliveryRequested.type_name
        and row.data.get("subscription_id") == subscription["id"]
    ):
        return Redeliver(row.data["event_id"])
    if row.meta.get("space") != subscription["space_id"] or topic in (None, WEBHOOKS):
        return None
    types = subscription["event_types"]
    return Deliver() if not types or any(fnmatchcase(row.type, t) for t in types) else None


def outcome(subscription_id: str, env: Envelope, attempts: int, error: str | None) -> list[Command]:
    """The commands a delivery's outcome asks for: a dead letter when it failed, else none."""
    if error is None:
        return []
    dead = c.DeadLetter(
        subscription_id=subscription_id,
        event_id=env.id,
        event_type=env.type,
        stream_id=env.stream_id,
        position=env.position,
        attempts=attempts,
        error=error,
    )
    return [dead]


class Stopped(Exception):
    """The cursor was stopped in the middle of an event's retries."""


def checkpoint(subscription_id: str) -> str:
    return f"logs.webhook:{subscription_id}"


def webhook_request(env: Envelope, secret: str, now: int) -> tuple[bytes, dict[str, str]]:
    """One event as a signed CloudEvents HTTP request (binary mode): body and headers."""
    data = env.data.model_dump(mode="json")
    for name in env.data.personal:
        data[name] = None
    body = json.dumps(data, separators=(",", ":")).encode()
    attributes = env.cloudevent_attributes()
    headers = {"content-type": attributes.pop("datacontenttype"), "user-agent": USER_AGENT}
    traceparent = attributes.pop("traceparent", None)
    if traceparent:
        headers["traceparent"] = traceparent
    headers.update({f"ce-{name}": value for name, value in attributes.items()})
    headers.update(
        {
            "webhook-id": env.id,
            "webhook-timestamp": str(now),
            "webhook-signature": sign(secret, env.id, now, body),
        }
    )
    return body, headers


class Cursor:
    def __init__(self, dispatcher: Dispatcher, doc: dict[str, Any]) -> None:
        self.dispatcher = dispatcher
        self.kernel = dispatcher.kernel
        self._wake = self.kernel.log.waker()
        self.settings = dispatcher.settings
        self.doc = doc
        self.id: str = doc["id"]
        self.secret = ""
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        try:
            state, _ = await aggregates.load(self.kernel.log, SUBSCRIPTIONS, self.id)
            self.secret = state.secret or ""
            position = max(
                await self.kernel.docs.get_checkpoint(checkpoint(self.id)),
                self.doc["start_position"],
            )
            # A start recorded before the API bounded it may lie beyond any position a store
            # can hold (reading after it overflows): such a cursor waits, as for one past the head.
            position = min(position, POSITION_MAX - 1)
            while not self._stopping.is_set():
                position = await self._step(position)
        except Stopped:
            pass

    async def _step(self, position: int) -> int:
        try:
            rows = await self.kernel.log.store.read_all(position + 1, BATCH)
        except Exception:
            log.exception("webhook cursor %s cannot read the log", self.id)
            await self._pause(1.0)
            return position
        if not rows:
            await self._wake(0.5)
            return position
        for row in rows:
            if self._stopping.is_set():
                break
            sent = await self._handle(row)
            position = row.position
            if sent:
                await self.kernel.docs.set_checkpoint(checkpoint(self.id), position)
        await self.kernel.docs.set_checkpoint(checkpoint(self.id), position)
        return position

    def _topic(self, row: StoredEvent) -> str | None:
        try:
            return self.kernel.log.registry.model(row.type).topic
        except UnknownEventType:
            return None

    async def _handle(self, row: StoredEvent) -> bool:
        """Deliver the event if it is one for this subscription; True if something was sent."""
        match policy(row, self._topic(row), self.doc):
            case Redeliver(event_id):
                await self._redeliver(event_id)
                return True
            case None:
                return False
        env = await self.kernel.log.decode(row)
        attempts, error = await self._send(env, self.settings.webhook_attempts)
        if error is not None:
            log.warning(
                "webhook %s dead-letters %s %s after %d attempts: %s",
                self.id,
                env.type,
                env.id,
                attempts,
                error,
            )
        for command in outcome(self.id, env, attempts, error):
            await self._record(command)
        return True

    async def _send(self, env: Envelope, attempts: int) -> tuple[int, str | None]:
        """POST the event until it is accepted (2xx) or `attempts` are spent."""
        error = None
        for attempt in range(1, attempts + 1):
            url = self.doc["url"]
            try:
                body, headers = webhook_request(env, self.secret, int(time.time()))
                response = await self.dispatcher.client.post(url, content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    return attempt, None
                error = f"HTTP {response.status_code} from the receiver"
            except (httpx.HTTPError, BlockedAddress) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < attempts:
                await self._pause(self._backoff(attempt))
        return attempts, error

    def _backoff(self, attempt: int) -> float:
        delay = min(
            self.settings.webhook_backoff_s * 2 ** (attempt - 1),
            self.settings.webhook_backoff_max_s,
        )
        return delay * random.uniform(0.8, 1.2)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        if self._stopping.is_set():
            raise Stopped

    async def _redeliver(self, event_id: str) -> None:
        state, _ = await aggregates.load(self.kernel.log, SUBSCRIPTIONS, self.id)
        letter = state.dead.get(event_id)
        if letter is None or letter.status != "redelivering":
            return
        rows = await self.kernel.log.store.read_all(letter.position, 1)
        if not rows or rows[0].id != event_id:
            attempts, error = 0, "the event is no longer in the log"
        else:
            attempts, error = await self._send(
                await self.kernel.log.decode(rows[0]), REDELIVERY_ATTEMPTS
            )
        command = c.RecordRedelivery(
            subscription_id=self.id, event_id=event_id, attempts=attempts, error=error
        )
        await self._record(command)

    async def _record(self, command: Command) -> None:
        await self.kernel.execute(command, in_space(CTX, self.doc["space_id"]))

    def stop(self) -> None:
        self._stopping.set()


class Dispatcher:
    """Keeps one cursor running per live, unpaused subscription."""

    def __init__(self, kernel: Kernel, settings: LogsSettings, poll: float = 0.5) -> None:
        self.kernel, self.settings, self.poll = kernel, settings, poll
        self.client: httpx.AsyncClient
        self.cursors: dict[str, tuple[Cursor, asyncio.Task]] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        register_all_events()
        timeout = httpx.Timeout(self.settings.webhook_timeout_s)
        transport = self.kernel.settings.egress.async_transport()
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, transport=transport
        ) as self.client:
            try:
                while not self._stopping.is_set():
                    try:
                        await self._reconcile()
                    except Exception:
                        log.exception("webhook dispatcher could not read its subscriptions")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), self.poll)
            finally:
                for cursor, _ in self.cursors.values():
                    cursor.stop()
                await asyncio.gather(
                    *(task for _, task in self.cursors.values()), return_exceptions=True
                )

    async def _reconcile(self) -> None:
        wanted = {
            sid: doc
            for sid, doc in (await self.kernel.docs.all_docs(SUBSCRIPTION_DOCS)).items()
            if not doc["paused"]
        }
        for sid in list(self.cursors):
            cursor, task = self.cursors[sid]
            if task.done():
                if not task.cancelled() and task.exception():
                    log.error("webhook cursor %s failed, restarting: %r", sid, task.exception())
                del self.cursors[sid]
            elif sid not in wanted:
                cursor.stop()  # removed once its task has ended, so no two cursors overlap
        for sid, doc in wanted.items():
            if sid not in self.cursors:
                cursor = Cursor(self, doc)
                self.cursors[sid] = (
                    cursor,
                    asyncio.create_task(cursor.run(), name=f"webhook:{sid}"),
                )
            else:
                self.cursors[sid][0].doc = doc

    def stop(self) -> None:
        self._stopping.set()
        for cursor, _ in self.cursors.values():
            cursor.stop()
