"""Settings of the model-serving service, read from `MLPLANE_SERVING_*` variables at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLPLANE_SERVING_", env_file=".env", extra="ignore"
    )

    local_server: str = "auto"
    """The managed local model server: on, off, or auto (on in the embedded deployment)."""
    local_port: int = 0
    """Its HTTP port (0: a free one, kept across restarts while it stays free)."""
    local_workers: int = 0
    """MLServer's parallel inference workers (0: inference in its main process, the lowest latency)."""
    mlserver_venv: Path | None = None
    """Virtualenv of MLServer, made by deploy/local/mlserver.sh (default: .mlplane/mlserver-venv in
    the source tree, shared by every MLPLANE_HOME on the machine)."""
    poll_s: float = 2.0
    """How often each server's health and loaded models are read."""
    max_model_bytes: int = 512 << 20
    max_files: int = 100

    @field_validator("local_server")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ("on", "off", "auto"):
            raise ValueError("MLPLANE_SERVING_LOCAL_SERVER must be on, off or auto")
        return value

    def local_enabled(self, distributed: bool) -> bool:
        return self.local_server == "on" or (self.local_server == "auto" and not distributed)
