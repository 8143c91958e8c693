"""Pure decisions of the inference-endpoint context, and the fold they decide on.

An endpoint is `pending` until its current revision serves somewhere (`running`), `failed` when
its rollout cannot proceed, `removed` at the end. Every change of its specification is a new
revision; a change that changes nothing decides nothing, and a rollback is a new revision that
carries an earlier one's specification.
"""

from __future__ import annotations

from typing import Any

from mlplane.aggregates import Aggregate, stamp
from mlplane.commands import Handler, decider
from mlplane.errors import Conflict, NotFound
from mlplane.events import Envelope, Event
from pydantic import BaseModel, ConfigDict

from . import commands as c
from . import events as e
from .events import endpoint_id

__all__ = ["COMMAND_HANDLERS", "ENDPOINTS", "decide", "endpoint_id"]

PENDING, RUNNING, FAILED, REMOVED = "pending", "running", "failed", "removed"
CONFIGURABLE = (
    "model_id",
    "version",
    "served_name",
    "format",
    "checkpoint_id",
    "model_name",
    "replicas",
    "selector",
    "resources",
    "runtime",
)


class EndpointState(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = ""
    space_id: str = ""
    name: str = ""
    owner: str = ""
    phase: str = ""
    reason: str = ""
    spec: dict[str, Any] = {}
    revision_id: str = ""
    revision: int = 0
    revisions: list[dict[str, Any]] = []
    targets: list[str] = []
    serving: str = ""
    """The served name the targets hold (during a rollout, still the previous revision's)."""
    url: str = ""
    created_at: str = ""
    updated_at: str = ""
    phase_updated_at: str = ""

    @property
    def live(self) -> bool:
        return bool(self.id) and self.phase != REMOVED

    def to_doc(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json", exclude={"revisions"})
        return {**doc, "served_name": self.spec.get("served_name", "")}


def evolve_endpoint(state: EndpointState, env: Envelope) -> EndpointState:
    at = stamp(env)
    phase = {"phase_updated_at": at, "updated_at": at}
    match env.data:
        case e.EndpointDeployed() as ev:
            revision = {
                "id": ev.revision_id,
                "revision": ev.revision,
                "spec": ev.spec,
                "created_at": at,
                "rollback_of": None,
            }
            return EndpointState(
                id=ev.endpoint_id,
                space_id=ev.space_id,
                name=ev.name,
                owner=ev.owner,
                phase=PENDING,
                spec=ev.spec,
                revision_id=ev.revision_id,
                revision=ev.revision,
                revisions=[*state.revisions, revision],
                created_at=at,
                **phase,
            )
        case e.EndpointReconfigured() as ev:
            revision = {
                "id": ev.revision_id,
                "revision": ev.revision,
                "spec": ev.spec,
                "created_at": at,
                "rollback_of": ev.rollback_of,
            }
            keep = ev.spec.get("served_name") == state.spec.get("served_name")
            return state.model_copy(
                update={
                    "spec": ev.spec,
                    "revision_id": ev.revision_id,
                    "revision": ev.revision,
                    "revisions": [*state.revisions, revision],
                    "reason": "",
                    "phase": RUNNING if keep and state.targets else PENDING,
                    **phase,
                }
            )
        case e.EndpointRolledOut() as ev:
            return state.model_copy(
                update={
                    "targets": ev.targets,
                    "url": ev.url,
                    "reason": "",
                    "serving": ev.served_name,
                    "phase": RUNNING if (ev.targets or ev.url) else PENDING,
                    **phase,
                }
            )
        case e.EndpointFailed(reason=reason):
            return state.model_copy(update={"phase": FAILED, "reason": reason, **phase})
        case e.EndpointRemoved():
            return state.model_copy(update={"phase": REMOVED, "targets": [], "url": "", **phase})
    return state


def not_found(name: str) -> NotFound:
    return NotFound(f"endpoint {name!r} not found")


def _live(state: EndpointState) -> EndpointState:
    if not state.live:
        raise not_found(state.name or state.id)
    return state


def deploy(state: EndpointState, cmd: c.DeployEndpoint) -> list[Event]:
    if state.live:
        raise Conflict(f"an endpoint named {cmd.name!r} exists in this space; change or remove it")
    return [
        e.EndpointDeployed(
            endpoint_id=cmd.endpoint_id,
            space_id=cmd.space_id,
            name=cmd.name,
            revision_id=cmd.revision_id,
            revision=len(state.revisions) + 1,
            spec=cmd.spec,
            owner=cmd.owner,
        )
    ]


def reconfigure(state: EndpointState, cmd: c.ReconfigureEndpoint) -> list[Event]:
    _live(state)
    spec = {**state.spec, **{k: v for k, v in cmd.changes.items() if k in CONFIGURABLE}}
    if spec == state.spec:
        return []
    return [
        e.EndpointReconfigured(
            endpoint_id=state.id,
            revision_id=cmd.revision_id,
            revision=len(state.revisions) + 1,
            spec=spec,
        )
    ]


def roll_back(state: EndpointState, cmd: c.RollBackEndpoint) -> list[Event]:
    _live(state)
    target = next(
        (
            r
            for r in state.revisions
            if r["id"] == cmd.to_revision or str(r["revision"]) == cmd.to_revision
        ),
        None,
    )
    if target is None:
        raise NotFound(f"endpoint {state.name!r} has no revision {cmd.to_revision!r}")
    if target["spec"] == state.spec:
        raise Conflict(f"the endpoint already runs revision {target['revision']}'s configuration")
    return [
        e.EndpointReconfigured(
            endpoint_id=state.id,
            revision_id=cmd.revision_id,
            revision=len(state.revisions) + 1,
            spec=target["spec"],
            rollback_of=target["id"],
        )
    ]


def roll_out(state: EndpointState, cmd: c.RollOutEndpoint) -> list[Event]:
    if not state.live or cmd.served_name != state.spec.get("served_name"):
        return []
    targets = sorted(set(cmd.targets))
    if (targets, cmd.url, cmd.served_name) == (
        state.targets,
        state.url,
        state.serving,
    ) and state.phase == RUNNING:
        return []
    if not targets and not cmd.url and not state.targets and not state.url:
        return []
    return [
        e.EndpointRolledOut(
            endpoint_id=state.id,
            revision_id=state.revision_id,
            served_name=cmd.served_name,
            targets=targets,
            url=cmd.url,
        )
    ]


def fail(state: EndpointState, cmd: c.FailEndpoint) -> list[Event]:
    if not state.live or (state.phase == FAILED and state.reason == cmd.reason):
        return []
    return [
        e.EndpointFailed(endpoint_id=state.id, revision_id=state.revision_id, reason=cmd.reason)
    ]


def remove(state: EndpointState, cmd: c.RemoveEndpoint) -> list[Event]:
    _live(state)
    return [e.EndpointRemoved(endpoint_id=state.id)]


ENDPOINTS = Aggregate("endpoint", EndpointState(), evolve_endpoint)

COMMAND_HANDLERS = {
    c.DeployEndpoint: Handler(ENDPOINTS, deploy, "endpoint_id"),
    c.ReconfigureEndpoint: Handler(ENDPOINTS, reconfigure, "endpoint_id"),
    c.RollBackEndpoint: Handler(ENDPOINTS, roll_back, "endpoint_id"),
    c.RollOutEndpoint: Handler(ENDPOINTS, roll_out, "endpoint_id"),
    c.FailEndpoint: Handler(ENDPOINTS, fail, "endpoint_id"),
    c.RemoveEndpoint: Handler(ENDPOINTS, remove, "endpoint_id"),
}

decide = decider(COMMAND_HANDLERS)
"""The events a command causes on a state already held: for tests and callers that hold one."""
