"""The event log over every adapter: typed appends, upcasting, time travel, crypto-shredding."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from backends import Backend
from mlplane import keystore as ks
from mlplane.eventlog import Context, EventLog
from mlplane.events import Envelope, Event, EventRegistry, StoredEvent
from mlplane.eventstore import NO_STREAM
from mlplane.keystore import ForgottenSubject

registry = EventRegistry()


@registry.register("MemberJoined", topic="team", personal=("email", "name"), subject_field="user")
class MemberJoined(Event):
    user: str
    role: str
    email: str | None = None
    name: str | None = None


@registry.register("RoleChanged", topic="team")
class RoleChanged(Event):
    user: str
    role: str


@registry.register("BudgetSet", topic="team", version=2)
class BudgetSet(Event):
    amount: int
    currency: str


@registry.upcaster("BudgetSet", 1)
def budget_v1_to_v2(data: dict) -> dict:
    """v1 kept cents in `cents` and had no currency."""
    return {"amount": data["cents"] // 100, "currency": "EUR"}


@registry.register(
    "ContactAdded", topic="team", version=2, personal=("email",), subject_field="user"
)
class ContactAdded(Event):
    user: str
    email: str | None = None


@registry.upcaster("ContactAdded", 1)
def contact_v1_to_v2(data: dict) -> dict:
    """v1 called the personal field `mail`."""
    return {"user": data["user"], "email": data.get("mail")}


def evolve(state: dict, env: Envelope) -> dict:
    ev = env.data
    if isinstance(ev, (MemberJoined, RoleChanged)):
        return {**state, ev.user: ev.role}
    return state


@pytest.fixture
def log(backend: Backend) -> EventLog:
    return backend.event_log(registry)


async def join(log: EventLog, user: str, version: int | None = None) -> list[Envelope]:
    event = MemberJoined(user=user, role="viewer", email=f"{user}@example.com", name=f"Name {user}")
    return await log.append("team:1", [event], version)


async def test_append_returns_typed_envelopes_carrying_the_context(log: EventLog):
    ctx = Context(
        space="s1", actor="u1", correlation_id="c1", causation_id="e0", source="mlplane/test"
    )
    [env] = await log.append("team:1", [RoleChanged(user="ann", role="owner")], NO_STREAM, ctx)
    assert env.data == RoleChanged(user="ann", role="owner")
    assert (env.version, env.position, env.space, env.actor) == (1, 1, "s1", "u1")
    assert (env.correlation_id, env.causation_id, env.source) == ("c1", "e0", "mlplane/test")
    assert await log.read_stream("team:1") == [env]


async def test_work_caused_by_an_event_carries_its_correlation(log: EventLog):
    [first] = await log.append(
        "team:1", [RoleChanged(user="ann", role="owner")], NO_STREAM, Context(space="s1")
    )
    [second] = await log.append(
        "team:2", [RoleChanged(user="bob", role="owner")], NO_STREAM, Context().caused_by(first)
    )
    assert (second.space, second.correlation_id, second.causation_id) == ("s1", first.id, first.id)


async def test_stored_old_versions_read_back_in_the_current_shape(log: EventLog):
    old = StoredEvent(
        id="b1", stream_id="team:1", type="BudgetSet", data={"cents": 12_300}, type_version=1
    )
    await log.store.append("team:1", [old], NO_STREAM)
    await log.append("team:1", [BudgetSet(amount=200, currency="USD")], 1)
    read = [env.data for env in await log.read_stream("team:1")]
    assert read == [BudgetSet(amount=123, currency="EUR"), BudgetSet(amount=200, currency="USD")]
    assert [env.data for env in await log.read_all()] == read
    assert (await log.store.read_stream("team:1"))[0].data == {"cents": 12_300}


async def test_state_at_a_version_folds_the_stream_up_to_that_version(log: EventLog):
    await join(log, "ann", NO_STREAM)
    await log.append("team:1", [RoleChanged(user="ann", role="owner")], 1)
    await join(log, "bob", 2)
    assert await log.state_at("team:1", evolve, {}, at_version=1) == ({"ann": "viewer"}, 1)
    assert await log.state_at("team:1", evolve, {}, at_version=2) == ({"ann": "owner"}, 2)
    assert await log.state_at("team:1", evolve, {}) == ({"ann": "owner", "bob": "viewer"}, 3)


async def test_state_at_a_moment_folds_the_events_that_happened_by_then(log: EventLog):
    [first] = await join(log, "ann", NO_STREAM)
    await asyncio.sleep(0.002)
    [second] = await log.append("team:1", [RoleChanged(user="ann", role="owner")], 1)
    await asyncio.sleep(0.002)
    await join(log, "bob", 2)
    assert await log.state_at("team:1", evolve, {}, at_time=first.time) == ({"ann": "viewer"}, 1)
    between = first.time + (second.time - first.time) / 2
    assert await log.state_at("team:1", evolve, {}, at_time=between) == ({"ann": "viewer"}, 1)
    assert await log.state_at("team:1", evolve, {}, at_time=second.time) == ({"ann": "owner"}, 2)


async def test_state_before_the_stream_existed_is_the_initial_state_at_version_zero(log: EventLog):
    [first] = await join(log, "ann", NO_STREAM)
    before = first.time - timedelta(seconds=1)
    assert await log.state_at("team:1", evolve, {}, at_time=before) == ({}, 0)
    assert await log.state_at("nobody", evolve, {"x": 1}) == ({"x": 1}, 0)


async def test_personal_fields_read_back_in_clear_until_the_subject_is_forgotten(log: EventLog):
    await join(log, "ann", NO_STREAM)
    [env] = await log.read_stream("team:1")
    assert (env.data.email, env.data.name) == ("ann@example.com", "Name ann")


async def test_the_store_holds_personal_fields_only_as_ciphertext(log: EventLog, backend: Backend):
    await join(log, "ann", NO_STREAM)
    raw = await backend.raw_events()
    assert "ann@example.com" not in raw and "Name ann" not in raw
    assert "enc:v1:ann:" in raw and "viewer" in raw


async def test_after_forgetting_reads_and_replays_show_personal_fields_as_none(log: EventLog):
    await join(log, "ann", NO_STREAM)
    await join(log, "bob", 1)
    await log.forget("ann")
    expected = [
        MemberJoined(user="ann", role="viewer", email=None, name=None),
        MemberJoined(user="bob", role="viewer", email="bob@example.com", name="Name bob"),
    ]
    assert [env.data for env in await log.read_stream("team:1")] == expected
    assert [env.data for env in await log.read_all()] == expected


async def test_a_forgotten_subject_stays_forgotten_for_a_new_log(log: EventLog, backend: Backend):
    await join(log, "ann", NO_STREAM)
    await log.forget("ann")
    fresh = backend.event_log(registry)
    assert [env.data.email for env in await fresh.read_all()] == [None]


async def test_personal_data_cannot_be_written_for_a_forgotten_subject(log: EventLog):
    await log.forget("ann")
    with pytest.raises(ForgottenSubject):
        await join(log, "ann", NO_STREAM)
    await log.append("team:1", [MemberJoined(user="ann", role="viewer")], NO_STREAM)
    assert [env.data.role for env in await log.read_all()] == ["viewer"]


async def test_a_personal_field_renamed_by_an_upcaster_is_still_decrypted_and_forgotten(
    log: EventLog,
):
    sealed = ks.encrypt(await log.keys.create("ann"), "ann", "ann@example.com")
    old = StoredEvent(
        id="c1",
        stream_id="team:1",
        type="ContactAdded",
        data={"user": "ann", "mail": sealed},
        type_version=1,
    )
    await log.store.append("team:1", [old], NO_STREAM)
    assert [env.data for env in await log.read_stream("team:1")] == [
        ContactAdded(user="ann", email="ann@example.com")
    ]
    await log.forget("ann")
    assert [env.data for env in await log.read_stream("team:1")] == [
        ContactAdded(user="ann", email=None)
    ]
