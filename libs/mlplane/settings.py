"""Settings: one class, read from `MLPLANE_*` variables (or a .env file), validated at start.

With nothing set, everything is embedded under `MLPLANE_HOME` (default ./.mlplane).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLPLANE_", env_file=".env", extra="ignore")

    home: Path = Path(".mlplane")
    event_store_url: str = ""
    """sqlite:///path/to/file.db (default: $MLPLANE_HOME/mlplane.db) or mongodb://host:port/db"""
    readmodel_url: str = ""
    """Where projections live; defaults to the event store's URL."""
    keystore_url: str = ""
    """Where per-subject keys live; default $MLPLANE_HOME/keys.db, or the MongoDB database."""
    bus_url: str = "inproc://"
    """inproc:// or kafka://host:port[,host:port]"""
    artifacts_url: str = ""
    """file:///path (default: $MLPLANE_HOME/artifacts) or s3://bucket/prefix[?endpoint=http://…]"""
    prefix: str = ""
    """Prefix of MongoDB collections, Kafka topics and consumer groups: one database and one
    broker can host several isolated deployments (`acme_` -> `acme_mlplane.training`)."""
    trace_exporter: str = "none"
    """none, console or otlp (OTLP/HTTP; endpoint from OTEL_EXPORTER_OTLP_ENDPOINT)."""
    admin_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    service: str = "all"
    max_body_bytes: int = 1 << 20
    max_json_depth: int = Field(32, ge=1, le=64)
    """JSON request bodies nested deeper are refused with 422 before any route reads them."""

    egress_allow: str = ""
    """Networks outbound calls to user-given URLs (webhooks, connector endpoints, cluster APIs)
    may reach besides global addresses, comma-separated: `10.0.0.0/8,127.0.0.1/32`. Empty:
    only global addresses (see `mlplane.egress`)."""

    @field_validator("bus_url")
    @classmethod
    def _known_bus(cls, value: str) -> str:
        if not value.startswith(("inproc://", "kafka://")):
            raise ValueError("bus_url must start with inproc:// or kafka://")
        return value

    @field_validator("event_store_url", "readmodel_url", "keystore_url")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "mongodb://")):
            raise ValueError("store URLs must start with sqlite:// or mongodb://")
        return value

    @field_validator("egress_allow")
    @classmethod
    def _networks(cls, value: str) -> str:
        from .egress import parse_networks

        try:
            parse_networks(value)
        except ValueError as exc:
            raise ValueError(f"MLPLANE_EGRESS_ALLOW: {exc}") from None
        return value

    @property
    def egress(self):
        """The outbound-address policy (`mlplane.egress.Egress`) these settings allow."""
        from .egress import Egress

        return Egress.from_setting(self.egress_allow)

    @property
    def events_url(self) -> str:
        return self.event_store_url or f"sqlite:///{self.home / 'mlplane.db'}"

    @property
    def readmodels_url(self) -> str:
        return self.readmodel_url or self.events_url

    @property
    def keys_url(self) -> str:
        if self.keystore_url:
            return self.keystore_url
        if self.events_url.startswith("mongodb://"):
            return self.events_url
        return f"sqlite:///{self.home / 'keys.db'}"

    @property
    def artifacts(self) -> str:
        return self.artifacts_url or f"file://{(self.home / 'artifacts').resolve()}"

    @property
    def distributed(self) -> bool:
        return self.events_url.startswith("mongodb://") or self.bus_url.startswith("kafka://")
