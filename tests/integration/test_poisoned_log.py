"""One event a projection cannot apply stops that projection alone, visibly, and nothing else.

The event log refuses such payloads on append (`EventRegistry.to_stored` reads each one back),
so these tests place one in the store the way an older version or another writer could have:
straight through the store port, past the registry.
"""

from __future__ import annotations

from typing import Any

import pytest
from backends import Backend
from mlplane.errors import UnreadableEvent
from mlplane.eventlog import EventLog
from mlplane.events import Envelope, Event, EventRegistry, StoredEvent, new_id
from mlplane.eventstore import NO_STREAM
from mlplane.kernel import Kernel
from mlplane.projections import (
    FAULTS,
    Projection,
    ProjectionRunner,
    ProjectionStopped,
    rebuild,
    verify,
)
from mlplane.readmodels import Doc
from mlplane.settings import Settings

registry = EventRegistry()


@registry.register("NoteWritten", topic="notes")
class NoteWritten(Event):
    text: str
    extra: dict[str, Any] = {}


class Notes(Projection):
    name = "notes"
    handles = frozenset({"NoteWritten"})

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        return {"text": event.data.text}


class Lengths(Projection):
    """A second projection of the same events that never looks into `extra`."""

    name = "lengths"
    handles = frozenset({"NoteWritten"})

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        return {"length": len(event.data.text)}


def deep(levels: int) -> dict:
    value: dict = {"a": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


def poison(stream_id: str) -> StoredEvent:
    """A NoteWritten whose payload pydantic's JSON reader refuses (nested past 200 levels)."""
    raw = NoteWritten(text="deep", extra=deep(250)).model_dump_json()
    return StoredEvent(new_id(), stream_id, "NoteWritten", raw=raw)


@pytest.fixture
async def kernel(backend: Backend):
    kernel = Kernel(
        settings=Settings(),
        log=backend.event_log(registry),
        docs=backend.read_models(),
        bus=_NoBus(),
    )
    kernel.add_projections([Notes(), Lengths()])
    yield kernel


class _NoBus:
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def write(log: EventLog, stream_id: str, text: str) -> None:
    await log.append(stream_id, [NoteWritten(text=text)], NO_STREAM)


async def test_the_log_refuses_a_payload_its_type_cannot_read_back(kernel: Kernel):
    with pytest.raises(UnreadableEvent, match="recursion limit"):
        await kernel.log.append("note:deep", [NoteWritten(text="x", extra=deep(250))], NO_STREAM)
    assert await kernel.log.store.read_all() == []


async def test_a_poisoned_event_stops_its_projection_and_no_write_of_another_stream(
    kernel: Kernel,
):
    await write(kernel.log, "note:1", "before")
    await kernel.log.store.append("note:bad", [poison("note:bad")], NO_STREAM)
    await write(kernel.log, "note:2", "after")

    await kernel.catch_up()  # the write path's read-your-writes: must not raise

    assert "notes" in kernel.health.faults and "lengths" in kernel.health.faults
    fault = kernel.health.faults["notes"]
    assert (fault["position"], fault["stream_id"], fault["type"]) == (2, "note:bad", "NoteWritten")
    assert "recursion limit" in fault["error"]
    # stopped just before the event: what came before it is there, nothing is skipped
    assert set(await kernel.docs.all_docs("notes")) == {"note:1"}
    assert await kernel.docs.get_checkpoint("notes") == 1
    # the fault is in the read-model store, for `mlplane projections status` in any process
    assert (await kernel.docs.all_docs(FAULTS))["notes"]["position"] == 2
    assert kernel.health.counts["notes"] == 1

    await write(kernel.log, "note:3", "still writable")
    await kernel.catch_up()
    assert kernel.health.counts["notes"] == 1  # the same fault is counted once


async def test_a_projection_resumes_once_it_can_apply_the_event(kernel: Kernel):
    class Picky(Notes):
        """A projection with a bug for one input, fixed in its next release."""

        fixed = False

        def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
            if event.data.text == "boom" and not self.fixed:
                raise KeyError("boom")
            return super().evolve(doc, event)

    picky = kernel.projections["notes"] = Picky()
    await write(kernel.log, "note:1", "boom")
    await write(kernel.log, "note:2", "after")
    await kernel.catch_up("notes")
    assert kernel.health.faults["notes"]["error"] == "KeyError: 'boom'"

    picky.fixed = True
    restarted = kernel.health.__class__(kernel.docs)  # a new process reads the stored faults
    await restarted.load()
    assert set(restarted.faults) == {"notes"}
    await ProjectionRunner(picky, kernel.log, kernel.docs, health=restarted).run_once()
    assert restarted.faults == {}
    assert "notes" not in await kernel.docs.all_docs(FAULTS)
    assert set(await kernel.docs.all_docs("notes")) == {"note:1", "note:2"}


async def test_verify_and_rebuild_name_the_event_and_keep_the_live_copy(kernel: Kernel):
    await write(kernel.log, "note:1", "before")
    await kernel.catch_up()
    await kernel.log.store.append("note:bad", [poison("note:bad")], NO_STREAM)
    live = await kernel.docs.resolve("notes")
    with pytest.raises(ProjectionStopped, match="position 2"):
        await verify(kernel.projections["notes"], kernel.log, kernel.docs)
    with pytest.raises(ProjectionStopped, match="note:bad"):
        await rebuild(kernel.projections["notes"], kernel.log, kernel.docs)
    assert await kernel.docs.resolve("notes") == live
    assert set(await kernel.docs.all_docs("notes")) == {"note:1"}
    assert [c for c in await kernel.docs.collections() if c.startswith("notes__")] == []


async def test_the_kernel_starts_and_stops_with_a_poisoned_event_in_the_store(kernel: Kernel):
    await kernel.log.store.append("note:bad", [poison("note:bad")], NO_STREAM)
    await write(kernel.log, "note:2", "after")
    await kernel.start(relay=False)
    try:
        await kernel.catch_up()
        assert kernel.health.faults["notes"]["position"] == 1
        await write(kernel.log, "note:3", "more")
    finally:
        await kernel.stop()
