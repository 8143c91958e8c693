"""Pure decisions of the logs service: state is a fold of a stream, a command becomes events.

Streams, all owned by this service: `webhook:<subscription id>` (the subscription, its dead
letters and their redeliveries), `webhook-in:<space id>` (the space's inbound secret) and
`status-report:<object>:<id>` (the status updates sent in about another context's entity: the
entity's own stream is its owner's, never written here). Nothing here does I/O;
`Kernel.execute` loads, decides and appends, after `COMMAND_HANDLERS` at the foot.
"""

from __future__ import annotations

from typing import Any

from mlplane.aggregates import Aggregate, State, stamp
from mlplane.commands import Handler
from mlplane.errors import Conflict, NotFound
from mlplane.events import Envelope, Event

from . import commands as c
from . import events as e

STATUS_ENTITIES = frozenset(
    {"space", "training", "datamodel", "connector", "cluster", "model", "server", "endpoint"}
)
"""Kinds of entity (stream prefixes) that accept status updates from outside."""


# ---------------------------------------------------------------- subscriptions


class DeadLetterState(State):
    event_id: str
    event_type: str
    stream_id: str
    position: int
    attempts: int
    error: str
    status: str = "dead"
    created_at: str
    updated_at: str


class SubscriptionState(State):
    id: str = ""
    space_id: str = ""
    url: str = ""
    event_types: list[str] = []
    secret: str | None = None
    start_position: int = 0
    paused: bool = False
    description: str = ""
    deleted: bool = False
    created_at: str = ""
    updated_at: str = ""
    dead: dict[str, DeadLetterState] = {}

    @property
    def live(self) -> bool:
        return bool(self.id) and not self.deleted

    def public(self) -> dict[str, Any]:
        """The subscription as its read model keeps it: never the secret."""
        return self.model_dump(mode="json", exclude={"secret", "dead", "deleted"})


def evolve_letter(letter: DeadLetterState | None, env: Envelope) -> DeadLetterState | None:
    """A dead letter's fold: parked, redelivery asked for, then arrived or parked again."""
    at = stamp(env)
    match env.data:
        case e.WebhookDeadLettered() as ev:
            return DeadLetterState(
                **ev.model_dump(exclude={"subscription_id"}), created_at=at, updated_at=at
            )
        case _ if letter is None:
            return None
        case e.WebhookRedeliveryRequested():
            return letter.model_copy(update={"status": "redelivering", "updated_at": at})
        case e.WebhookRedelivered(attempts=attempts):
            return letter.model_copy(
                update={
                    "status": "redelivered",
                    "attempts": letter.attempts + attempts,
                    "updated_at": at,
                }
            )
        case e.WebhookRedeliveryFailed(attempts=attempts, error=error):
            return letter.model_copy(
                update={
                    "status": "dead",
                    "attempts": letter.attempts + attempts,
                    "error": error,
                    "updated_at": at,
                }
            )
    return letter


def evolve_subscription(state: SubscriptionState, env: Envelope) -> SubscriptionState:
    at = stamp(env)
    match env.data:
        case e.WebhookSubscribed() as ev:
            return SubscriptionState(
                id=ev.subscription_id,
                space_id=ev.space_id,
                url=ev.url,
                event_types=ev.event_types,
                secret=ev.secret,
                start_position=ev.start_position,
                description=ev.description,
                created_at=at,
                updated_at=at,
            )
        case e.WebhookSubscriptionUpdated() as ev:
            changes = {
                k: v for k, v in ev.model_dump(exclude={"subscription_id"}).items() if v is not None
            }
            return state.model_copy(update={**changes, "updated_at": at})
        case e.WebhookUnsubscribed():
            return state.model_copy(update={"deleted": True, "secret": None, "updated_at": at})
        case (
            e.WebhookDeadLettered()
            | e.WebhookRedeliveryRequested()
            | e.WebhookRedelivered()
            | e.WebhookRedeliveryFailed()
        ) as ev:
            letter = evolve_letter(state.dead.get(ev.event_id), env)
            if letter is None:
                return state
            return state.model_copy(update={"dead": {**state.dead, ev.event_id: letter}})
    return state


def _live(state: SubscriptionState) -> SubscriptionState:
    if not state.live:
        raise NotFound(
            f"webhook subscription {state.id!r} not found"
            if state.id
            else "webhook subscription not found"
        )
    return state


def _letter(state: SubscriptionState, event_id: str) -> DeadLetterState:
    letter = state.dead.get(event_id)
    if letter is None:
        raise NotFound(f"no dead letter for event {event_id!r}")
    return letter


def subscribe(state: SubscriptionState, cmd: c.Subscribe) -> list[Event]:
    if state.id:
        raise Conflict(f"webhook subscription {cmd.subscription_id!r} already exists")
    return [e.WebhookSubscribed(**cmd.model_dump())]


def update_subscription(state: SubscriptionState, cmd: c.UpdateSubscription) -> list[Event]:
    _live(state)
    changes = {
        k: v
        for k, v in cmd.model_dump(exclude={"subscription_id"}).items()
        if v is not None and v != getattr(state, k)
    }
    return [e.WebhookSubscriptionUpdated(subscription_id=state.id, **changes)] if changes else []


def unsubscribe(state: SubscriptionState, cmd: c.Unsubscribe) -> list[Event]:
    return [e.WebhookUnsubscribed(subscription_id=_live(state).id)]


def dead_letter(state: SubscriptionState, cmd: c.DeadLetter) -> list[Event]:
    if cmd.event_id in state.dead or not state.id:
        return []
    return [e.WebhookDeadLettered(**cmd.model_dump())]


def request_redelivery(state: SubscriptionState, cmd: c.RequestRedelivery) -> list[Event]:
    letter = _letter(_live(state), cmd.event_id)
    if letter.status == "redelivered":
        raise Conflict(f"event {cmd.event_id!r} has been redelivered already")
    if letter.status == "redelivering":
        return []
    return [e.WebhookRedeliveryRequested(subscription_id=state.id, event_id=cmd.event_id)]


def record_redelivery(state: SubscriptionState, cmd: c.RecordRedelivery) -> list[Event]:
    if _letter(state, cmd.event_id).status != "redelivering":
        return []
    if cmd.error is None:
        return [
            e.WebhookRedelivered(
                subscription_id=state.id, event_id=cmd.event_id, attempts=cmd.attempts
            )
        ]
    return [
        e.WebhookRedeliveryFailed(
            subscription_id=state.id, event_id=cmd.event_id, attempts=cmd.attempts, error=cmd.error
        )
    ]


# ---------------------------------------------------------------- inbound secrets


class InboundState(State):
    space_id: str = ""
    secret_id: str = ""
    secret: str | None = None


def evolve_inbound(state: InboundState, env: Envelope) -> InboundState:
    match env.data:
        case e.InboundSecretRotated() as ev:
            return InboundState(space_id=ev.space_id, secret_id=ev.secret_id, secret=ev.secret)
    return state


def rotate_inbound_secret(state: InboundState, cmd: c.RotateInboundSecret) -> list[Event]:
    return [e.InboundSecretRotated(**cmd.model_dump())]


# ---------------------------------------------------------------- status reports


class StatusReportState(State):
    """The status updates sent in about one entity of another context (stream
    `status-report:<object>:<id>`, owned by this service): whose entity it is, the last status
    reported, and which deliveries it has taken already."""

    id: str = ""
    space_id: str = ""
    object: str = ""
    entity_id: str = ""
    status: str = ""
    event: str = ""
    name: str = ""
    type: str = ""
    payload: dict[str, Any] = {}
    timestamp: str = ""
    reports: int = 0
    deliveries: frozenset[str] = frozenset()
    created_at: str = ""
    updated_at: str = ""

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"deliveries"})


def evolve_status_report(state: StatusReportState, env: Envelope) -> StatusReportState:
    match env.data:
        case e.EntityStatusReported() as ev:
            at = stamp(env)
            fields = ev.model_dump(exclude={"delivery_id", "id", "payload"})
            return state.model_copy(
                update={
                    **fields,
                    "id": f"{ev.object}:{ev.id}",
                    "space_id": env.space or state.space_id,
                    "entity_id": ev.id,
                    "payload": ev.payload,
                    "reports": state.reports + 1,
                    "deliveries": state.deliveries | {ev.delivery_id},
                    "created_at": state.created_at or at,
                    "updated_at": at,
                }
            )
    return state


def report_status(state: StatusReportState, cmd: c.ReportStatus) -> list[Event]:
    """Accept an update about an entity of the sender's space that takes updates; one whose
    delivery id this entity has taken already changes nothing. An unknown entity, another
    space's, or a kind that takes none are the same NotFound, so ids cannot be probed."""
    if (
        cmd.object not in STATUS_ENTITIES
        or cmd.entity_space is None
        or cmd.entity_space != cmd.space_id
    ):
        raise NotFound(f"{cmd.object} {cmd.id!r} not found")
    if cmd.delivery_id in state.deliveries:
        return []
    return [e.EntityStatusReported(**cmd.model_dump(exclude={"space_id", "entity_space"}))]


# ---------------------------------------------------------------- the command table

SUBSCRIPTIONS = Aggregate("webhook", SubscriptionState(), evolve_subscription)
INBOUND = Aggregate("webhook-in", InboundState(), evolve_inbound)
STATUS_REPORTS = Aggregate("status-report", StatusReportState(), evolve_status_report)

COMMAND_HANDLERS: dict[type[c.Command], Handler[Any]] = {
    c.Subscribe: Handler(SUBSCRIPTIONS, subscribe, "subscription_id"),
    c.UpdateSubscription: Handler(SUBSCRIPTIONS, update_subscription, "subscription_id"),
    c.Unsubscribe: Handler(SUBSCRIPTIONS, unsubscribe, "subscription_id"),
    c.DeadLetter: Handler(SUBSCRIPTIONS, dead_letter, "subscription_id"),
    c.RequestRedelivery: Handler(SUBSCRIPTIONS, request_redelivery, "subscription_id"),
    c.RecordRedelivery: Handler(SUBSCRIPTIONS, record_redelivery, "subscription_id"),
    c.RotateInboundSecret: Handler(INBOUND, rotate_inbound_secret, "space_id"),
    c.ReportStatus: Handler(STATUS_REPORTS, report_status, "report_id"),
}
