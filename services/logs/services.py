"""Use cases of the logs service beyond one command (a lookup first, or a read over several
read models), tested without HTTP against an in-memory kernel.

An inference log is explained (`explain_log`) from the `logs_explain` projection: the endpoint
it named, the revision in force then, and what that revision points at.

A status update names an entity of another context (`<object>:<id>`). Who owns that entity is
read from the first event of its stream (the event log is the registry of every entity; no
table of our own to drift); the update itself is recorded on this service's own stream
`status-report:<object>:<id>`, never on the entity's.
"""

from __future__ import annotations

from datetime import UTC

from mlplane.eventlog import Context
from mlplane.eventstore import EventStore
from mlplane.kernel import Kernel
from mlplane.projections import strip

from . import commands as c
from .aggregate import LogRecord
from .explain import EXPLAIN, endpoint_at, explanation, revision_at
from .handlers import STATUS_ENTITIES


async def entity_space(store: EventStore, object: str, entity_id: str) -> str | None:
    """The space whose entity `<object>:<id>` is (its first event names it), or None when there
    is no such entity, or it is of a kind that takes no status updates (never read then)."""
    if object not in STATUS_ENTITIES:
        return None
    first = await store.read_stream(f"{object}:{entity_id}", 1, 1)
    return first[0].meta.get("space") if first else None


async def report_status(kernel: Kernel, command: c.ReportStatus, ctx: Context) -> bool:
    """Record a status update about one of the sender's entities; False if it was a repeat."""
    found = await entity_space(kernel.log.store, command.object, command.id)
    outcome = await kernel.execute(command.model_copy(update={"entity_space": found}), ctx)
    return bool(outcome.events)


async def explain_log(kernel: Kernel, log: LogRecord) -> dict:
    """Which configuration answered `log`: its endpoint then, that revision's model version,
    servers, checkpoint, training and bundle (see `explain`)."""
    await kernel.catch_up(EXPLAIN)
    named = await kernel.docs.query(
        EXPLAIN, {"kind": "endpoint", "space_id": log.space, "name": log.endpoint}, limit=100
    )
    public = {**log.public(), "time": log.time.astimezone(UTC).isoformat(timespec="microseconds")}
    endpoint = endpoint_at([strip(d) or {} for d in named.data], public["time"])
    revision, rollout = revision_at(endpoint, public["time"]) if endpoint else (None, None)
    spec = (revision or {}).get("spec", {})
    docs: dict[str, dict] = {}

    async def fetch(key: str) -> dict:
        if key not in docs:
            found = await kernel.docs.get(EXPLAIN, key)
            if found is not None:
                docs[key] = strip(found) or {}
        return docs.get(key, {})

    for target in (rollout or {}).get("targets", []):
        await fetch(f"server:{target}")
    model = await fetch(f"model:{spec.get('model_id') or log.model}")
    version = str(spec.get("version") or log.version or "")
    checkpoint_id = spec.get("checkpoint_id") or model.get("versions", {}).get(version, {}).get(
        "checkpoint_id"
    )
    if checkpoint_id:
        checkpoint = await fetch(f"checkpoint:{checkpoint_id}")
        if checkpoint:
            trained = await fetch(f"training:{checkpoint['training_id']}")
            if trained.get("bundle_id"):
                await fetch(f"bundle:{trained['bundle_id']}")
    return explanation(public, endpoint, docs)
