"""Settings of the logs service, read from `MLPLANE_LOGS_*` variables at start-up."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SETTINGS = "logs.settings"
"""Where the service's start-up leaves its settings in `Kernel.extensions`."""


class LogsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLPLANE_LOGS_", env_file=".env", extra="ignore")

    url: str = ""
    """Where inference logs live: sqlite:///path (default $MLPLANE_HOME/logs.db, beside, not
    inside, the event store) or mongodb://host/db (default: the read models' database)."""
    retention_hours: float = Field(default=24 * 14, gt=0)
    """Raw logs older than this are purged; summaries stay."""
    purge_interval_s: float = Field(default=600, gt=0)
    ingest: bool = True
    """Run the Kafka ingest in this process (off: `python -m services.logs ingest` runs it)."""
    ingest_group: str = "mlplane-logs"
    """Kafka consumer group of the ingest."""
    ingest_session_timeout_ms: int = Field(default=10_000, ge=6_000)
    """How soon the partitions of an ingest that died go to another one (Kafka session)."""
    ingest_batch: int = Field(default=20_000, ge=1)
    """Most logs fetched and written in one batch (two batches are held at once: about 40 MB)."""
    webhook_attempts: int = Field(default=8, ge=1)
    """Delivery attempts before an event is dead-lettered."""
    webhook_backoff_s: float = Field(default=1.0, gt=0)
    """Delay before the first retry; it doubles with each attempt."""
    webhook_backoff_max_s: float = Field(default=300.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_tolerance_s: int = Field(default=300, gt=0)
    """How far an inbound webhook's timestamp may be from now (replay protection)."""
    webhook_dispatch: bool = True
    """Run the outbound dispatcher in this process (run it in exactly one logs process)."""

    @field_validator("url")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "mongodb://")):
            raise ValueError("MLPLANE_LOGS_URL must start with sqlite:// or mongodb://")
        return value

    def store_url(self, readmodels_url: str, home) -> str:
        if self.url:
            return self.url
        if readmodels_url.startswith("mongodb://"):
            return readmodels_url
        return f"sqlite:///{home / 'logs.db'}"
