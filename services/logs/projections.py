"""Read models of the logs service, pure folds that can be dropped and rebuilt from the log.

They reuse the aggregates' folds (`evolve_subscription`, `evolve_letter`,
`evolve_status_report`), so what a client lists and what a decision is taken on cannot drift
apart; secrets never reach a read model. Dead letters get a document each, so a subscription's
list pages like any other. The explain projection (`explain.py`) folds the other contexts'
events into what an inference log is explained with.
"""

from __future__ import annotations

from typing import Any

from mlplane.aggregates import stamp
from mlplane.events import Envelope
from mlplane.projections import Projection

from . import events as e
from .handlers import (
    DeadLetterState,
    StatusReportState,
    SubscriptionState,
    evolve_letter,
    evolve_status_report,
    evolve_subscription,
)

Doc = dict[str, Any]

SUBSCRIPTIONS = "logs_webhook_subscriptions"
DEAD_LETTERS = "logs_webhook_dead_letters"
INBOUND_SECRETS = "logs_webhook_inbound_secrets"
STATUS_REPORTS = "logs_status_reports"

LETTER_EVENTS = (
    e.WebhookDeadLettered,
    e.WebhookRedeliveryRequested,
    e.WebhookRedelivered,
    e.WebhookRedeliveryFailed,
)


def _types(*classes: type) -> frozenset[str]:
    return frozenset(cls.type_name for cls in classes)


class Subscriptions(Projection):
    """Live subscriptions (a deleted one is a tombstone), with how many dead letters wait."""

    name = SUBSCRIPTIONS
    handles = _types(
        e.WebhookSubscribed,
        e.WebhookSubscriptionUpdated,
        e.WebhookUnsubscribed,
        e.WebhookDeadLettered,
        e.WebhookRedelivered,
    )

    def key(self, event: Envelope) -> str:
        return event.data.subscription_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = evolve_subscription(
            SubscriptionState.model_validate(doc) if doc else SubscriptionState(), event
        )
        if state.deleted:
            return None
        waiting = (doc or {}).get("dead_letters", 0)
        waiting += {e.WebhookDeadLettered: 1, e.WebhookRedelivered: -1}.get(type(event.data), 0)
        return {**state.public(), "dead_letters": waiting}


class DeadLetters(Projection):
    name = DEAD_LETTERS
    handles = _types(*LETTER_EVENTS)

    def key(self, event: Envelope) -> str:
        return f"{event.data.subscription_id}:{event.data.event_id}"

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        letter = evolve_letter(DeadLetterState.model_validate(doc) if doc else None, event)
        if letter is None:
            return None
        subscription = event.data.subscription_id
        return {
            **letter.model_dump(mode="json"),
            "id": f"{subscription}:{letter.event_id}",
            "subscription_id": subscription,
        }


class InboundSecrets(Projection):
    """Per space, which inbound secret signs its updates and since when (never the secret)."""

    name = INBOUND_SECRETS
    handles = _types(e.InboundSecretRotated)

    def key(self, event: Envelope) -> str:
        return event.data.space_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data = event.data
        return {"space_id": data.space_id, "secret_id": data.secret_id, "rotated_at": stamp(event)}


class StatusReports(Projection):
    """Per reported entity (`<object>:<id>`), the last status sent in and how many came."""

    name = STATUS_REPORTS
    handles = _types(e.EntityStatusReported)

    def key(self, event: Envelope) -> str:
        return f"{event.data.object}:{event.data.id}"

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = StatusReportState.model_validate(doc) if doc else StatusReportState()
        return evolve_status_report(state, event).public()


def projections() -> list[Projection]:
    from .explain import Explain

    return [Subscriptions(), DeadLetters(), InboundSecrets(), StatusReports(), Explain()]
