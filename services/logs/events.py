"""Events of the logs context: inference logs, webhook subscriptions and inbound status updates.

`InferenceLogged` is the odd one out: it is never appended to the event store. Inference is the
hottest path of the platform, so its logs travel only on the bus topic `mlplane.inference`
(key `inference-log:<id>`, CloudEvents headers like every other topic) and the logs service
folds them into the raw log and the summary buckets (see docs/logs.md).

Streams, all this service's own: `webhook:<subscription id>` (the subscription, its dead
letters and redeliveries), `webhook-in:<space id>` (the space's inbound secret) and
`status-report:<object>:<id>` (the status updates sent in about another context's entity,
`space:<id>`, `connector:<id>`, ...: that entity's stream is its owner's and never written here;
a context that cares follows `EntityStatusReported` on topic `status`).

Webhook secrets are personal fields, each under a key of its own subscription or secret id, so
deleting a subscription or rotating a secret destroys the old secret in every replay too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from mlplane.events import Event, registry
from pydantic import Field

INFERENCE = "inference"
WEBHOOKS = "webhooks"
STATUS = "status"


@registry.register("InferenceLogged", topic=INFERENCE)
class InferenceLogged(Event):
    """One inference request served by an endpoint: who asked, which model answered, how it went."""

    space: str
    endpoint: str
    model: str
    version: str = ""
    user: str = ""
    status: Literal["success", "error"]
    type: str = ""
    """The kind of request: infer, chat, completion, embedding..."""
    tags: list[str] = Field(default_factory=list)
    latency_ms: float = Field(ge=0)
    request_bytes: int = Field(default=0, ge=0)
    response_bytes: int = Field(default=0, ge=0)
    tokens_in: int | None = Field(default=None, ge=0)
    tokens_out: int | None = Field(default=None, ge=0)
    correlation_id: str = ""
    error: str | None = None
    time: datetime


def _webhook(name: str, personal: tuple[str, ...] = (), subject_field: str | None = None):
    return registry.register(name, topic=WEBHOOKS, personal=personal, subject_field=subject_field)


@_webhook("WebhookSubscribed", personal=("secret",), subject_field="subscription_id")
class WebhookSubscribed(Event):
    subscription_id: str
    space_id: str
    url: str
    event_types: list[str]
    secret: str | None = None
    start_position: int
    """Deliveries start after this position of the event log (backfill from the past)."""
    description: str = ""


@_webhook("WebhookSubscriptionUpdated")
class WebhookSubscriptionUpdated(Event):
    """Changed fields only; a field left None is unchanged."""

    subscription_id: str
    url: str | None = None
    event_types: list[str] | None = None
    paused: bool | None = None
    description: str | None = None


@_webhook("WebhookUnsubscribed")
class WebhookUnsubscribed(Event):
    subscription_id: str


@_webhook("WebhookDeadLettered")
class WebhookDeadLettered(Event):
    """A delivery that exhausted its retries; the cursor moved on without it."""

    subscription_id: str
    event_id: str
    event_type: str
    stream_id: str
    position: int
    attempts: int
    error: str


@_webhook("WebhookRedeliveryRequested")
class WebhookRedeliveryRequested(Event):
    subscription_id: str
    event_id: str


@_webhook("WebhookRedelivered")
class WebhookRedelivered(Event):
    subscription_id: str
    event_id: str
    attempts: int


@_webhook("WebhookRedeliveryFailed")
class WebhookRedeliveryFailed(Event):
    subscription_id: str
    event_id: str
    attempts: int
    error: str


@_webhook("InboundSecretRotated", personal=("secret",), subject_field="secret_id")
class InboundSecretRotated(Event):
    """A space's new secret for signing the status updates it sends in."""

    space_id: str
    secret_id: str
    secret: str | None = None


@registry.register("EntityStatusReported", topic=STATUS)
class EntityStatusReported(Event):
    """A status update an outside system sent about one of the space's entities."""

    delivery_id: str
    object: str
    id: str
    event: str = ""
    status: str = ""
    name: str = ""
    type: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: str = ""
