"""Settings of the training service, read from `MLPLANE_TRAINING_*` variables at start-up."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .unpack import Limits


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLPLANE_TRAINING_", env_file=".env", extra="ignore"
    )

    runtime: str = "local://"
    """Where trainings run unless a request names another: local:// or kubernetes://"""
    slots: int = 2
    """Local jobs running at once; more wait in the queue."""
    runner_id: str = ""
    """This runner's identity in TrainingStarted events (default: host and home folder)."""
    timeout_s: int = 3600
    memory_mb: int = 4096
    max_bundle_bytes: int = 256 << 20
    max_entries: int = 10_000
    max_unpacked_bytes: int = 1 << 30
    log_flush_s: float = 0.3
    data_root: Path | None = None
    """Folder local-directory connectors may read from (default $MLPLANE_HOME/datasets)."""
    image: str = "python:3.11-slim"
    """Container image of Kubernetes training jobs (mlplane installed in it)."""
    namespace: str = "default"
    poll_s: float = 2.0
    """How often a Kubernetes job's status and logs are read."""
    status_refresh_s: float = Field(default=300.0, ge=0)
    """How often every connector's storage and every cluster's API are probed again to refresh
    their status (0: only when they are created or changed). Reads never call out."""

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        if value not in ("local://", "kubernetes://"):
            raise ValueError("MLPLANE_TRAINING_RUNTIME must be local:// or kubernetes://")
        return value

    @property
    def limits(self) -> Limits:
        return Limits(max_entries=self.max_entries, max_bytes=self.max_unpacked_bytes)

    def runner(self, home: Path) -> str:
        return self.runner_id or f"{socket.gethostname()}:{home.resolve()}"

    def datasets(self, home: Path) -> Path:
        return (self.data_root or home / "datasets").resolve()
