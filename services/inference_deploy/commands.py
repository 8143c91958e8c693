"""Commands of the inference-endpoint context."""

from __future__ import annotations

from typing import Any

from mlplane.commands import Command


class DeployEndpoint(Command):
    endpoint_id: str
    space_id: str
    name: str
    revision_id: str
    spec: dict[str, Any]
    owner: str = ""


class ReconfigureEndpoint(Command):
    endpoint_id: str
    revision_id: str
    changes: dict[str, Any]


class RollBackEndpoint(Command):
    endpoint_id: str
    revision_id: str
    to_revision: str
    """A revision id, or a revision number as text."""


class RollOutEndpoint(Command):
    endpoint_id: str
    served_name: str
    targets: list[str]
    url: str = ""


class FailEndpoint(Command):
    endpoint_id: str
    reason: str


class RemoveEndpoint(Command):
    endpoint_id: str
