"""Projections over every adapter: folding, resuming, replays, rebuild and verify, forgetting."""

from __future__ import annotations

import pytest
from backends import Backend
from mlplane.eventlog import EventLog
from mlplane.events import Envelope, Event, EventRegistry
from mlplane.eventstore import ANY, NO_STREAM
from mlplane.projections import (
    Projection,
    ProjectionRunner,
    content_hash,
    fold_batch,
    rebuild,
    verify,
)
from mlplane.readmodels import Doc, ReadModelStore, Write

registry = EventRegistry()


@registry.register("AccountOpened", topic="bank", personal=("email",), subject_field="owner")
class AccountOpened(Event):
    owner: str
    email: str | None = None


@registry.register("Deposited", topic="bank")
class Deposited(Event):
    amount: int


@registry.register("AccountClosed", topic="bank")
class AccountClosed(Event):
    pass


@registry.register("Audited", topic="bank")
class Audited(Event):
    pass


class Accounts(Projection):
    """Balances are sums, so an event folded twice would show."""

    name = "accounts"
    handles = frozenset({"AccountOpened", "Deposited", "AccountClosed"})

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        ev = event.data
        if isinstance(ev, AccountOpened):
            return {"owner": ev.owner, "email": ev.email, "balance": 0, "deposits": 0}
        if isinstance(ev, Deposited):
            return {**doc, "balance": doc["balance"] + ev.amount, "deposits": doc["deposits"] + 1}
        return None  # closed


ACCOUNTS = Accounts()


@pytest.fixture
def log(backend: Backend) -> EventLog:
    return backend.event_log(registry)


@pytest.fixture
def docs(backend: Backend) -> ReadModelStore:
    return backend.read_models()


async def open_account(log: EventLog, account: str, owner: str, *deposits: int) -> None:
    events = [AccountOpened(owner=owner, email=f"{owner}@example.com")]
    await log.append(account, events + [Deposited(amount=a) for a in deposits], NO_STREAM)


async def balances(docs: ReadModelStore) -> dict[str, int]:
    return {k: d["balance"] for k, d in (await docs.all_docs(ACCOUNTS.name)).items()}


async def fill(log: EventLog) -> None:
    await open_account(log, "acc:1", "ann", 10, 20)
    await open_account(log, "acc:2", "bob", 5)
    await log.append("audit", [Audited()], ANY)
    await open_account(log, "acc:3", "cid")
    await log.append("acc:3", [AccountClosed()], 1)


async def test_the_runner_folds_every_handled_event_into_documents(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    assert await ProjectionRunner(ACCOUNTS, log, docs).run_once() == 8
    assert await balances(docs) == {"acc:1": 30, "acc:2": 5}
    assert await docs.get(ACCOUNTS.name, "acc:1") == {
        "_key": "acc:1",
        "_pos": 3,
        "owner": "ann",
        "email": "ann@example.com",
        "balance": 30,
        "deposits": 2,
    }


async def test_a_deleted_document_is_hidden_but_remembers_its_position(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    await ProjectionRunner(ACCOUNTS, log, docs).run_once()
    assert await docs.get(ACCOUNTS.name, "acc:3") is None
    assert (await docs.positions(ACCOUNTS.name, ["acc:3"]))["acc:3"] == 8


async def test_the_runner_records_its_position_including_events_it_does_not_handle(
    log: EventLog, docs: ReadModelStore
):
    await open_account(log, "acc:1", "ann", 10)
    await log.append("audit", [Audited(), Audited()], ANY)
    await ProjectionRunner(ACCOUNTS, log, docs).run_once()
    assert await docs.get_checkpoint(ACCOUNTS.name) == 4


async def test_a_new_runner_resumes_from_the_checkpoint(log: EventLog, docs: ReadModelStore):
    await open_account(log, "acc:1", "ann", 10)
    await ProjectionRunner(ACCOUNTS, log, docs).run_once()
    await log.append("acc:1", [Deposited(amount=1)], 2)
    await open_account(log, "acc:2", "bob")
    assert await ProjectionRunner(ACCOUNTS, log, docs).run_once() == 2
    assert await balances(docs) == {"acc:1": 11, "acc:2": 0}
    assert await ProjectionRunner(ACCOUNTS, log, docs).run_once() == 0


async def test_a_replayed_batch_changes_nothing(log: EventLog, docs: ReadModelStore):
    await fill(log)
    batch = await log.store.read_all()
    await fold_batch(ACCOUNTS, log, docs, ACCOUNTS.name, batch)
    once = await docs.all_docs(ACCOUNTS.name)
    await fold_batch(ACCOUNTS, log, docs, ACCOUNTS.name, batch)
    assert await docs.all_docs(ACCOUNTS.name) == once
    assert await balances(docs) == {"acc:1": 30, "acc:2": 5}


async def test_a_batch_replayed_after_a_crash_applies_only_what_was_missing(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    batch = await log.store.read_all()
    await fold_batch(ACCOUNTS, log, docs, ACCOUNTS.name, batch[:2])  # crashed before the checkpoint
    assert await ProjectionRunner(ACCOUNTS, log, docs).run_once() == 8
    assert await balances(docs) == {"acc:1": 30, "acc:2": 5}


async def test_rebuild_swaps_in_a_new_collection_equal_to_the_live_one(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    await ProjectionRunner(ACCOUNTS, log, docs).run_once()
    live = await docs.all_docs(ACCOUNTS.name)
    physical = await rebuild(ACCOUNTS, log, docs)
    assert physical != ACCOUNTS.name
    assert await docs.resolve(ACCOUNTS.name) == physical
    assert content_hash(await docs.all_docs(physical)) == content_hash(live)
    assert await docs.all_docs(ACCOUNTS.name) == live
    assert await docs.get_checkpoint(physical) == await log.store.head_position()


async def test_after_a_rebuild_the_live_runner_continues_in_the_rebuilt_collection(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    runner = ProjectionRunner(ACCOUNTS, log, docs)
    await runner.run_once()
    physical = await rebuild(ACCOUNTS, log, docs)
    await log.append("acc:2", [Deposited(amount=100)], 2)
    assert await runner.run_once() == 1
    assert (await docs.get(physical, "acc:2"))["balance"] == 105
    assert (await docs.get(ACCOUNTS.name, "acc:2"))["balance"] == 105


async def test_a_rebuild_keeps_the_previous_copy_and_drops_older_ones(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    await ProjectionRunner(ACCOUNTS, log, docs).run_once()
    first = await rebuild(ACCOUNTS, log, docs)
    assert {ACCOUNTS.name, first} <= set(await docs.collections())
    second = await rebuild(ACCOUNTS, log, docs)
    ours = {c for c in await docs.collections() if c.startswith(ACCOUNTS.name)}
    assert ours == {first, second}


async def test_verify_finds_no_difference_in_a_healthy_projection(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    await ProjectionRunner(ACCOUNTS, log, docs).run_once()
    difference = await verify(ACCOUNTS, log, docs)
    assert difference.empty, difference
    assert not [c for c in await docs.collections() if "verify" in c]


async def test_verify_brings_a_lagging_live_projection_level_before_comparing(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    await ProjectionRunner(ACCOUNTS, log, docs).run_once()
    await log.append("acc:1", [Deposited(amount=1)], 3)
    assert (await verify(ACCOUNTS, log, docs)).empty
    assert (await balances(docs))["acc:1"] == 31


async def test_verify_reports_changed_missing_and_extra_documents(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    await ProjectionRunner(ACCOUNTS, log, docs).run_once()
    later = await log.store.head_position() + 100
    await docs.put_many(
        ACCOUNTS.name,
        [
            Write(
                "acc:1", {"owner": "ann", "email": None, "balance": 1_000_000, "deposits": 2}, later
            ),
            Write("acc:2", None, later),
            Write("acc:9", {"owner": "mallory", "balance": 5}, later),
        ],
    )
    difference = await verify(ACCOUNTS, log, docs)
    assert (difference.changed, difference.missing, difference.extra) == (
        ["acc:1"],
        ["acc:2"],
        ["acc:9"],
    )
    assert not difference.empty


async def test_verify_reports_a_document_changed_at_its_own_position(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    await ProjectionRunner(ACCOUNTS, log, docs).run_once()
    await docs.drop(ACCOUNTS.name)
    await docs.put_many(
        ACCOUNTS.name, [Write("acc:2", {"owner": "bob", "balance": 6, "deposits": 1}, 5)]
    )
    await docs.set_checkpoint(ACCOUNTS.name, await log.store.head_position())
    difference = await verify(ACCOUNTS, log, docs)
    assert (difference.changed, difference.missing) == (["acc:2"], ["acc:1"])


async def test_a_rebuilt_projection_shows_forgotten_personal_fields_as_none(
    log: EventLog, docs: ReadModelStore
):
    await fill(log)
    await log.forget("ann")
    physical = await rebuild(ACCOUNTS, log, docs)
    rebuilt = await docs.all_docs(physical)
    assert rebuilt["acc:1"]["email"] is None and rebuilt["acc:1"]["owner"] == "ann"
    assert rebuilt["acc:1"]["balance"] == 30
    assert rebuilt["acc:2"]["email"] == "bob@example.com"
