"""Forgetting a data subject leaves none of its clear text in the read-model store, on every
adapter: not in the rebuilt copies, and not in the copies they replaced either (a rebuild keeps
the previous copy for readers that still hold its name; a forget must not)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from backends import Backend
from mlplane.adapters import bus
from mlplane.eventlog import Context
from mlplane.events import Envelope, Event, EventRegistry
from mlplane.kernel import Kernel
from mlplane.projections import Projection, ProjectionRunner, rebuild
from mlplane.readmodels import Doc
from mlplane.settings import Settings

registry = EventRegistry()
EMAIL = "ann.forgettable@example.com"


@registry.register("MemberJoined", topic="club", personal=("email",), subject_field="member")
class MemberJoined(Event):
    member: str
    email: str | None = None


class Members(Projection):
    name = "members"
    handles = frozenset({"MemberJoined"})

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        return {"member": event.data.member, "email": event.data.email}


class Emails(Projection):
    """A second projection of the same events: every projection is cleaned, not one."""

    name = "emails"
    handles = frozenset({"MemberJoined"})

    def key(self, event: Envelope) -> str:
        return event.data.email or event.data.member

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        return {"email": event.data.email}


async def raw_read_models(b: Backend) -> dict[str, str]:
    """Every physical collection's stored rows, tombstones included, read past the aliases."""
    if b.name == "sqlite":
        conn = sqlite3.connect(b.path)
        try:
            rows = conn.execute("SELECT coll, key, doc FROM docs").fetchall()
        finally:
            conn.close()
        out: dict[str, list] = {}
        for coll, key, doc in rows:
            out.setdefault(coll, []).append([key, doc])
        return {coll: json.dumps(found) for coll, found in out.items()}
    out_mongo = {}
    for name in await b.db.list_collection_names():
        if name.startswith(b.prefix):
            found = [d async for d in b.db[name].find({})]
            out_mongo[name] = json.dumps(found, default=str)
    return out_mongo


async def test_forgetting_leaves_no_clear_text_in_any_read_model_collection(
    backend: Backend,
    tmp_path: Path,
):
    kernel = Kernel(
        settings=Settings(home=tmp_path),
        log=backend.event_log(registry),
        docs=backend.read_models(),
        bus=bus("inproc://"),
    )
    kernel.add_projections([Members(), Emails()])
    ctx = Context(actor="test")
    await kernel.log.append("member:ann", [MemberJoined(member="ann", email=EMAIL)], None, ctx)
    await kernel.log.append(
        "member:bob", [MemberJoined(member="bob", email="bob@x.org")], None, ctx
    )
    for projection in kernel.projections.values():
        await ProjectionRunner(projection, kernel.log, kernel.docs).run_once()
    await rebuild(kernel.projections["members"], kernel.log, kernel.docs)  # an earlier rebuild
    assert any(EMAIL in rows for rows in (await raw_read_models(backend)).values())

    await kernel.forget("ann")

    names = await kernel.docs.collections()
    assert names, "the read models are still there"
    for name in names:
        assert EMAIL not in json.dumps(await kernel.docs.all_docs(name)), name
    leaking = [name for name, rows in (await raw_read_models(backend)).items() if EMAIL in rows]
    assert leaking == []
    members = await kernel.docs.all_docs("members")
    assert members["member:ann"]["email"] is None and members["member:bob"]["email"] == "bob@x.org"
    await kernel.stop()
