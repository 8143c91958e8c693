"""Settings of the inference-endpoint service, read from `MLPLANE_DEPLOY_*` variables at
start-up (the routes' defaults and the Kubernetes runtime's)."""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeploySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLPLANE_DEPLOY_", env_file=".env", extra="ignore")

    runtime: str = "local://"
    """Where new endpoints run unless a request names another: local:// or kubernetes://"""
    triton_image: str = "nvcr.io/nvidia/tritonserver:24.08-py3"
    """The image of endpoints on kubernetes://."""
    namespace: str = "default"
    kube_poll_s: float = 2.0
    """How often a Kubernetes rollout's state is read."""

    @field_validator("runtime")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ("local://", "kubernetes://"):
            raise ValueError("MLPLANE_DEPLOY_RUNTIME must be local:// or kubernetes://")
        return value
