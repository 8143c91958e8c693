"""The logs service's API models: what clients send (unknown fields refused) and what they get
back, with the field names of seed 003 (inference-logs, webhooks). Never events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from mlplane.names import NameOrEmpty
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

POSITION_MAX = 2**63 - 1
"""The highest position an event store can hold (a signed 64-bit integer in SQLite and BSON)."""

EventType = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.*?\[\]-]+$")]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- inference logs


class InferenceLogPublic(Output):
    id: str
    space: str
    endpoint: str
    model: str
    version: str
    user: str
    status: str
    type: str
    tags: list[str]
    latency_ms: float
    request_bytes: int
    response_bytes: int
    tokens_in: int | None
    tokens_out: int | None
    correlation_id: str
    error: str | None
    time: datetime


class ModelUsage(Output):
    calls: int
    errors: int
    success_rate: float
    avg_latency_ms: float
    input_tokens: int
    output_tokens: int
    total_tokens: int


class InferenceLogSummary(Output):
    """Aggregates over the logs matching the filters in whole minutes [period_start_date,
    period_end_date); period_start_date is null when the period is open at the start."""

    total_calls: int
    error_count: int
    success_rate: float
    avg_latency_ms: float
    max_latency_ms: float
    latency_percentiles_ms: dict[str, float]
    input_tokens: int
    output_tokens: int
    total_tokens: int
    request_bytes: int
    response_bytes: int
    model_usage: dict[str, ModelUsage]
    period_start_date: datetime | None
    period_end_date: datetime
    bucket_seconds: int


class ExplainedEndpoint(Output):
    id: str
    name: str
    revision_id: str | None
    revision: int | None
    rollback_of: str | None
    """The revision this one rolled back to, when it was a rollback."""
    configured_at: str | None
    rolled_out_at: str | None
    """When the revision went live on its servers (null: not rolled out by the log's time)."""
    served_name: str | None


class ExplainedModel(Output):
    id: str
    name: str | None
    version: str
    format: str | None
    source: str | None
    files: dict[str, str]
    """Each file of the version and its SHA-256."""


class ExplainedServer(Output):
    id: str
    name: str | None
    host: str | None
    port: int | None
    kind: str | None


class ExplainedCheckpoint(Output):
    id: str
    name: str | None
    version: int | None
    format: str | None
    uri: str | None
    metrics: dict[str, float] | None


class ExplainedTraining(Output):
    id: str
    name: str | None
    source: str | None
    architecture: str | None


class ExplainedBundle(Output):
    id: str | None
    """The uploaded bundle (null for a built-in architecture's training)."""
    code_hash: str
    data_hash: str
    parameters_hash: str
    bundle_hash: str


class InferenceLogExplanation(Output):
    """Which configuration answered one inference, as it stood at the log's time; a part the
    platform never learnt (a model uploaded by hand has no checkpoint) is null."""

    log_id: str
    time: datetime
    endpoint: ExplainedEndpoint | None
    model: ExplainedModel
    servers: list[ExplainedServer]
    checkpoint: ExplainedCheckpoint | None
    training: ExplainedTraining | None
    bundle: ExplainedBundle | None
    matches_log: bool
    """The revision's model and version are those the log recorded (false: the data plane
    still routed to the previous revision when it answered)."""


# ---------------------------------------------------------------- webhooks out


class StartAt(Input):
    """Where a new subscription's deliveries begin: after a position of the event log (at most
    its head), or with the first event at or after a time (backfill). Neither: with the next
    event appended."""

    position: int | None = Field(default=None, ge=0, le=POSITION_MAX)
    time: datetime | None = None

    @model_validator(mode="after")
    def _one(self) -> StartAt:
        if self.position is not None and self.time is not None:
            raise ValueError("give a position or a time, not both")
        return self


class SubscriptionCreate(Input):
    url: AnyHttpUrl
    event_types: list[EventType] = Field(default_factory=list, max_length=100)
    """Event type names or glob patterns (`Space*`); empty means every type."""
    secret: str | None = Field(default=None, min_length=24, max_length=200)
    """The signing secret; one is generated (and shown once) when left out."""
    start: StartAt = Field(default_factory=StartAt)
    description: str = Field(default="", max_length=1000)


class SubscriptionUpdate(Input):
    url: AnyHttpUrl | None = None
    event_types: list[EventType] | None = Field(default=None, max_length=100)
    paused: bool | None = None
    description: str | None = Field(default=None, max_length=1000)


class SubscriptionPublic(Output):
    id: str
    space_id: str
    url: str
    event_types: list[str]
    paused: bool
    description: str
    start_position: int
    position: int = 0
    """The last position of the event log this subscription has dealt with."""
    dead_letters: int
    created_at: str
    updated_at: str


class SubscriptionCreated(SubscriptionPublic):
    secret: str | None = None
    """Shown once, when the platform generated it."""


class DeadLetterPublic(Output):
    id: str
    subscription_id: str
    event_id: str
    event_type: str
    stream_id: str
    position: int
    attempts: int
    error: str
    status: Literal["dead", "redelivering", "redelivered"]
    created_at: str
    updated_at: str


class Ref(Output):
    id: str


class RedeliveryAccepted(Output):
    id: str
    status: str


# ---------------------------------------------------------------- webhooks in


class StatusUpdate(Input):
    """Seed 003's webhook payload: a status update about one entity of the sender's space.

    `object` names the kind of entity (the prefix of its stream: `space`, `connector`, ...)."""

    id: str = Field(min_length=1, max_length=200)
    object: str = Field(default="space", min_length=1, max_length=50, pattern=r"^[a-z][a-z0-9-]*$")
    event: str = Field(default="", max_length=100)
    name: NameOrEmpty = ""
    status: str = Field(default="", max_length=100)
    type: str = Field(default="", max_length=100)
    timestamp: str = Field(default="", max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)


class StatusAccepted(Output):
    id: str
    """The delivery id."""
    duplicate: bool = False


class InboundSecretPublic(Output):
    space_id: str
    secret_id: str
    secret: str
    """Shown once: sign each update with it (see docs/logs.md)."""


class InboundSecretInfo(Output):
    """Which secret a space's updates are signed with, and since when; never the secret."""

    space_id: str
    secret_id: str
    rotated_at: str


class StatusReportPublic(Output):
    """The last status update sent in about one entity, and how many came."""

    id: str
    """`<object>:<entity id>`."""
    space_id: str
    object: str
    entity_id: str
    status: str
    event: str
    name: str
    type: str
    payload: dict[str, Any]
    timestamp: str
    reports: int
    created_at: str
    updated_at: str
