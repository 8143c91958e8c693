"""Pure decisions of the model-serving context, and the folds they decide on.

A server's stream holds both sides of its state: placements (what should be loaded there, from
commands) and what the server was last seen to hold. Drift is the difference between the two
for versions that were loaded once (a placement still loading is converging, not drifting) and
for platform-served names nobody holds; it is reported when it changes, and the fleet worker
reconciles it by loading and unloading.
"""

from __future__ import annotations

from typing import Any

from mlplane.aggregates import Aggregate, State, stamp
from mlplane.commands import Handler, decider
from mlplane.errors import Conflict, NotFound
from mlplane.events import Envelope, Event

from . import commands as c
from . import events as e
from .events import SERVED_PREFIX, served_name

PENDING, LOADED, FAILED, UNLOADED = "pending", "loaded", "failed", "unloaded"
__all__ = ["COMMAND_HANDLERS", "MODELS", "SERVED_PREFIX", "SERVERS", "decide", "served_name"]


# ---------------------------------------------------------------- models


class ModelState(State):
    id: str = ""
    space_id: str = ""
    name: str = ""
    description: str = ""
    versions: dict[str, dict[str, Any]] = {}
    created_at: str = ""
    created_by: str = ""
    updated_at: str = ""
    deleted: bool = False

    @property
    def live(self) -> bool:
        return bool(self.id) and not self.deleted

    @property
    def latest_version(self) -> int | None:
        return max((int(v) for v in self.versions), default=None)

    @property
    def next_version(self) -> int:
        return (self.latest_version or 0) + 1


def evolve_model(state: ModelState, env: Envelope) -> ModelState:
    at = stamp(env)
    match env.data:
        case e.ModelCreated() as ev:
            return ModelState(
                id=ev.model_id,
                space_id=ev.space_id,
                name=ev.name,
                description=ev.description,
                created_at=at,
                created_by=env.actor or "",
                updated_at=at,
            )
        case e.ModelUpdated() as ev:
            changes = {
                k: v for k, v in ev.model_dump(exclude={"model_id"}).items() if v is not None
            }
            return state.model_copy(update={**changes, "updated_at": at})
        case e.ModelVersionAdded() as ev:
            version = {
                **ev.model_dump(mode="json", exclude={"model_id"}),
                "created_at": at,
                "served_name": served_name(ev.model_id, ev.version),
            }
            return state.model_copy(
                update={"versions": {**state.versions, str(ev.version): version}, "updated_at": at}
            )
        case e.ModelVersionDeleted(version=version):
            versions = {k: v for k, v in state.versions.items() if k != str(version)}
            return state.model_copy(update={"versions": versions, "updated_at": at})
        case e.ModelDeleted():
            return state.model_copy(update={"deleted": True, "updated_at": at})
    return state


def model_not_found(model_id: str) -> NotFound:
    return NotFound(f"model {model_id!r} not found")


def _live_model(state: ModelState, model_id: str) -> ModelState:
    if not state.live:
        raise model_not_found(model_id)
    return state


def create_model(state: ModelState, cmd: c.CreateModel) -> list[Event]:
    if state.id:
        raise Conflict(f"model {cmd.model_id!r} already exists")
    return [e.ModelCreated(**cmd.model_dump())]


def update_model(state: ModelState, cmd: c.UpdateModel) -> list[Event]:
    _live_model(state, cmd.model_id)
    changes = {
        k: v
        for k, v in cmd.model_dump(exclude={"model_id"}).items()
        if v is not None and v != getattr(state, k)
    }
    return [e.ModelUpdated(model_id=cmd.model_id, **changes)] if changes else []


def delete_model(state: ModelState, cmd: c.DeleteModel) -> list[Event]:
    _live_model(state, cmd.model_id)
    return [e.ModelDeleted(model_id=cmd.model_id)]


def add_version(state: ModelState, cmd: c.AddVersion) -> list[Event]:
    _live_model(state, cmd.model_id)
    if str(cmd.version) in state.versions or cmd.version < state.next_version:
        raise Conflict(
            f"version {cmd.version} of model {cmd.model_id!r} exists already; upload again"
        )
    return [e.ModelVersionAdded(**cmd.model_dump())]


def delete_version(state: ModelState, cmd: c.DeleteVersion) -> list[Event]:
    _live_model(state, cmd.model_id)
    if str(cmd.version) not in state.versions:
        raise NotFound(f"model {cmd.model_id!r} has no version {cmd.version}")
    return [e.ModelVersionDeleted(model_id=cmd.model_id, version=cmd.version)]


def record_import_failed(state: ModelState, cmd: c.RecordImportFailed) -> list[Event]:
    if state.live:
        return []
    return [e.ModelImportFailed(**cmd.model_dump())]


# ---------------------------------------------------------------- servers


class ServerState(State):
    id: str = ""
    name: str = ""
    host: str = ""
    port: int = 0
    gpus: int = 0
    kind: str = "triton"
    managed: bool = False
    repository: str = ""
    labels: dict[str, str] = {}
    live: bool = False
    ready: bool = False
    error: str = ""
    health_changed_at: str | None = None
    loaded: list[str] = []
    observed_at: str | None = None
    placements: dict[str, dict[str, Any]] = {}
    drift: dict[str, list[str]] = {"missing": [], "unexpected": []}
    created_at: str = ""
    updated_at: str = ""
    deleted: bool = False

    @property
    def registered(self) -> bool:
        return bool(self.id) and not self.deleted

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def held(self) -> dict[str, dict[str, Any]]:
        """The desired state: placements someone holds."""
        return {name: p for name, p in self.placements.items() if p["holders"]}

    def drift_against(self, loaded: list[str]) -> dict[str, list[str]]:
        held, seen = self.held(), set(loaded)
        missing = sorted(n for n, p in held.items() if p["status"] == LOADED and n not in seen)
        unexpected = sorted(n for n in seen if n.startswith(SERVED_PREFIX) and n not in held)
        return {"missing": missing, "unexpected": unexpected}


def _placement(state: ServerState, name: str, **changes: Any) -> dict[str, dict[str, Any]]:
    current = state.placements.get(name)
    if current is None:
        return state.placements
    return {**state.placements, name: {**current, **changes}}


def evolve_server(state: ServerState, env: Envelope) -> ServerState:
    at = stamp(env)
    touched = {"updated_at": at}
    match env.data:
        case e.ServerRegistered() as ev:
            return ServerState(
                id=ev.server_id, created_at=at, **ev.model_dump(exclude={"server_id"}), **touched
            )
        case e.ServerUpdated() as ev:
            changes = {
                k: v for k, v in ev.model_dump(exclude={"server_id"}).items() if v is not None
            }
            return state.model_copy(update={**changes, **touched})
        case e.ServerDeleted():
            return state.model_copy(update={"deleted": True, **touched})
        case e.ServerHealthChanged() as ev:
            return state.model_copy(
                update={
                    "live": ev.live,
                    "ready": ev.ready,
                    "error": ev.error,
                    "health_changed_at": at,
                    **touched,
                }
            )
        case e.ServerModelsObserved(loaded=loaded):
            return state.model_copy(
                update={
                    "loaded": sorted(loaded),
                    "observed_at": at,
                    "drift": state.drift_against(loaded),
                    **touched,
                }
            )
        case e.ServerDriftDetected(missing=missing, unexpected=unexpected):
            return state.model_copy(
                update={"drift": {"missing": missing, "unexpected": unexpected}, **touched}
            )
        case e.PlacementRequested() as ev:
            current = state.placements.get(ev.served_name)
            if current is None:
                current = {
                    "served_name": ev.served_name,
                    "model_id": ev.model_id,
                    "version": ev.version,
                    "space_id": ev.space_id,
                    "holders": [],
                    "status": PENDING,
                    "error": "",
                    "requested_at": at,
                }
            holders = sorted({*current["holders"], ev.holder})
            return state.model_copy(
                update={
                    "placements": {
                        **state.placements,
                        ev.served_name: {**current, "holders": holders},
                    },
                    **touched,
                }
            )
        case e.PlacementReleased(served_name=name, holder=holder):
            current = state.placements.get(name)
            if current is None:
                return state
            holders = [h for h in current["holders"] if h != holder]
            return state.model_copy(
                update={"placements": _placement(state, name, holders=holders), **touched}
            )
        case e.ModelVersionLoaded(served_name=name):
            loaded = sorted({*state.loaded, name})
            after = state.model_copy(
                update={
                    "placements": _placement(state, name, status=LOADED, error="", loaded_at=at),
                    "loaded": loaded,
                    **touched,
                }
            )
            return after.model_copy(update={"drift": after.drift_against(loaded)})
        case e.ModelVersionLoadFailed(served_name=name, error=error):
            return state.model_copy(
                update={
                    "placements": _placement(state, name, status=FAILED, error=error),
                    **touched,
                }
            )
        case e.ModelVersionUnloaded(served_name=name):
            current = state.placements.get(name)
            placements = dict(state.placements)
            if current is not None and not current["holders"]:
                del placements[name]
            elif current is not None:
                placements[name] = {**current, "status": UNLOADED}
            loaded = [n for n in state.loaded if n != name]
            after = state.model_copy(update={"placements": placements, "loaded": loaded, **touched})
            return after.model_copy(update={"drift": after.drift_against(loaded)})
    return state


def server_not_found(server_id: str) -> NotFound:
    return NotFound(f"inference server {server_id!r} not found")


def _registered(state: ServerState, server_id: str) -> ServerState:
    if not state.registered:
        raise server_not_found(server_id)
    return state


def register_server(state: ServerState, cmd: c.RegisterServer) -> list[Event]:
    if state.registered:
        raise Conflict(f"inference server {cmd.server_id!r} is registered already")
    return [e.ServerRegistered(**cmd.model_dump())]


def update_server(state: ServerState, cmd: c.UpdateServer) -> list[Event]:
    _registered(state, cmd.server_id)
    changes = {
        k: v
        for k, v in cmd.model_dump(exclude={"server_id"}).items()
        if v is not None and v != getattr(state, k)
    }
    return [e.ServerUpdated(server_id=cmd.server_id, **changes)] if changes else []


def delete_server(state: ServerState, cmd: c.DeleteServer) -> list[Event]:
    _registered(state, cmd.server_id)
    return [e.ServerDeleted(server_id=cmd.server_id)]


def record_health(state: ServerState, cmd: c.RecordHealth) -> list[Event]:
    if not state.registered:
        return []
    if (state.live, state.ready, state.error) == (
        cmd.live,
        cmd.ready,
        cmd.error,
    ) and state.health_changed_at:
        return []
    return [e.ServerHealthChanged(**cmd.model_dump())]


def observe_models(state: ServerState, cmd: c.ObserveModels) -> list[Event]:
    if not state.registered:
        return []
    loaded = sorted(set(cmd.loaded))
    events: list[Event] = []
    if loaded != state.loaded or state.observed_at is None:
        events.append(e.ServerModelsObserved(server_id=cmd.server_id, loaded=loaded))
    drift = state.drift_against(loaded)
    if (drift["missing"] or drift["unexpected"]) and drift != state.drift:
        events.append(e.ServerDriftDetected(server_id=cmd.server_id, **drift))
    return events


def request_placement(state: ServerState, cmd: c.RequestPlacement) -> list[Event]:
    _registered(state, cmd.server_id)
    current = state.placements.get(cmd.served_name)
    if current is not None and cmd.holder in current["holders"]:
        return []
    requested = e.PlacementRequested(**cmd.model_dump())
    if current is not None and current["status"] == LOADED and cmd.served_name in state.loaded:
        # already serving: the new holder is told at once, as a load would have told it
        return [
            requested,
            e.ModelVersionLoaded(
                server_id=cmd.server_id,
                served_name=cmd.served_name,
                model_id=cmd.model_id,
                version=cmd.version,
                holders=[cmd.holder],
            ),
        ]
    return [requested]


def release_placement(state: ServerState, cmd: c.ReleasePlacement) -> list[Event]:
    current = state.placements.get(cmd.served_name)
    if not state.registered or current is None or cmd.holder not in current["holders"]:
        return []
    return [e.PlacementReleased(**cmd.model_dump())]


def _outcome_fields(state: ServerState, name: str) -> dict[str, Any]:
    placement = state.placements.get(name, {})
    return {
        "server_id": state.id,
        "served_name": name,
        "model_id": placement.get("model_id", ""),
        "version": placement.get("version", 0),
    }


def record_loaded(state: ServerState, cmd: c.RecordLoaded) -> list[Event]:
    placement = state.placements.get(cmd.served_name)
    if not state.registered or placement is None:
        return []
    if placement["status"] == LOADED and cmd.served_name in state.loaded:
        return []
    return [
        e.ModelVersionLoaded(
            **_outcome_fields(state, cmd.served_name), holders=placement["holders"]
        )
    ]


def record_load_failed(state: ServerState, cmd: c.RecordLoadFailed) -> list[Event]:
    placement = state.placements.get(cmd.served_name)
    if not state.registered or placement is None:
        return []
    if placement["status"] == FAILED and placement["error"] == cmd.error:
        return []
    return [
        e.ModelVersionLoadFailed(
            **_outcome_fields(state, cmd.served_name), error=cmd.error, holders=placement["holders"]
        )
    ]


def record_unloaded(state: ServerState, cmd: c.RecordUnloaded) -> list[Event]:
    if not state.registered:
        return []
    placement = state.placements.get(cmd.served_name)
    if placement is None and cmd.served_name not in state.loaded:
        return []
    return [e.ModelVersionUnloaded(**_outcome_fields(state, cmd.served_name))]


MODELS = Aggregate("model", ModelState(), evolve_model)
SERVERS = Aggregate("server", ServerState(), evolve_server)

COMMAND_HANDLERS = {
    c.CreateModel: Handler(MODELS, create_model, "model_id"),
    c.UpdateModel: Handler(MODELS, update_model, "model_id"),
    c.DeleteModel: Handler(MODELS, delete_model, "model_id"),
    c.AddVersion: Handler(MODELS, add_version, "model_id"),
    c.DeleteVersion: Handler(MODELS, delete_version, "model_id"),
    c.RecordImportFailed: Handler(MODELS, record_import_failed, "model_id"),
    c.RegisterServer: Handler(SERVERS, register_server, "server_id"),
    c.UpdateServer: Handler(SERVERS, update_server, "server_id"),
    c.DeleteServer: Handler(SERVERS, delete_server, "server_id"),
    c.RecordHealth: Handler(SERVERS, record_health, "server_id"),
    c.ObserveModels: Handler(SERVERS, observe_models, "server_id"),
    c.RequestPlacement: Handler(SERVERS, request_placement, "server_id"),
    c.ReleasePlacement: Handler(SERVERS, release_placement, "server_id"),
    c.RecordLoaded: Handler(SERVERS, record_loaded, "server_id"),
    c.RecordLoadFailed: Handler(SERVERS, record_load_failed, "server_id"),
    c.RecordUnloaded: Handler(SERVERS, record_unloaded, "server_id"),
}

decide = decider(COMMAND_HANDLERS)
"""The events a command causes on a state already held: for tests and callers that hold one."""
