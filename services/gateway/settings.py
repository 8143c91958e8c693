"""Settings of the gateway, read from `MLPLANE_GATEWAY_*` variables at start-up."""

from __future__ import annotations

from limits import parse
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SETTINGS = "gateway.settings"
"""Where the gateway's start-up leaves its settings in `Kernel.extensions`."""


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLPLANE_GATEWAY_", env_file=".env", extra="ignore"
    )

    login_failures_per_account: str = "5/minute"
    """Failed logins one account may take in a moving window (`limits` notation: `5/minute`,
    `10 per hour`); past it, that account's logins answer 429 until the window moves on."""
    login_failures_per_address: str = "20/minute"
    """Failed logins one client address may make, over all accounts."""

    @field_validator("login_failures_per_account", "login_failures_per_address")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        try:
            amount = parse(value).amount
        except ValueError:
            amount = 0
        if amount < 1:
            raise ValueError(f"{value!r} is not a rate such as '5/minute'")
        return value
