"""Contract of the event store port, run against every adapter (SQLite, MongoDB on FerretDB)."""

from __future__ import annotations

import asyncio

import pytest
from backends import Backend
from mlplane.errors import ConcurrencyError, Conflict
from mlplane.events import StoredEvent, new_id
from mlplane.eventstore import ANY, NO_STREAM, EventStore
from mlplane.eventstore.mongo import _doc
from pymongo.errors import DocumentTooLarge


def ev(stream_id: str, n: int = 0, **data: object) -> StoredEvent:
    return StoredEvent(
        id=new_id(), stream_id=stream_id, type="Thing", data={"n": n, **data}, meta={"actor": "u1"}
    )


def evs(stream_id: str, count: int, start: int = 0) -> list[StoredEvent]:
    return [ev(stream_id, start + i) for i in range(count)]


def summary(events: list[StoredEvent]) -> list[tuple[str, int, int]]:
    return [(e.stream_id, e.version, e.data["n"]) for e in events]


async def test_appended_events_read_back_with_data_metadata_and_time(event_store: EventStore):
    sent = [ev("a", 1, nested={"x": [1, 2.5, None, "s"]}), ev("a", 2)]
    stored = await event_store.append("a", sent, NO_STREAM)
    read = await event_store.read_stream("a")
    assert read == stored
    assert [e.id for e in read] == [e.id for e in sent]
    assert read[0].data == {"n": 1, "nested": {"x": [1, 2.5, None, "s"]}}
    assert read[0].meta == {"actor": "u1"}
    assert read[0].time == sent[0].time
    assert read[0].type == "Thing" and read[0].type_version == 1


async def test_data_keys_with_dots_and_dollars_round_trip(event_store: EventStore):
    data = {"params": {"lr.decay": 0.5, "$weird": 1, "path/to/file.py": "x"}}
    await event_store.append("a", [ev("a", **data)], NO_STREAM)
    assert (await event_store.read_stream("a"))[0].data["params"] == data["params"]


async def test_versions_are_contiguous_across_appends(event_store: EventStore):
    await event_store.append("a", evs("a", 3), NO_STREAM)
    await event_store.append("a", evs("a", 1, 3), 3)
    await event_store.append("a", evs("a", 2, 4), 4)
    read = await event_store.read_stream("a")
    assert [e.version for e in read] == [1, 2, 3, 4, 5, 6]
    assert [e.data["n"] for e in read] == [0, 1, 2, 3, 4, 5]
    assert await event_store.stream_version("a") == 6


async def test_append_returns_events_with_their_version_and_position(event_store: EventStore):
    await event_store.append("other", evs("other", 2), NO_STREAM)
    stored = await event_store.append("a", evs("a", 2), NO_STREAM)
    assert [(e.version, e.position) for e in stored] == [(1, 3), (2, 4)]
    assert await event_store.head_position() == 4


async def test_append_to_a_new_stream_with_no_stream_succeeds(event_store: EventStore):
    stored = await event_store.append("a", evs("a", 1), NO_STREAM)
    assert stored[0].version == 1


async def test_append_with_no_stream_to_an_existing_stream_raises_concurrency_error(
    event_store: EventStore,
):
    await event_store.append("a", evs("a", 2), NO_STREAM)
    with pytest.raises(ConcurrencyError) as err:
        await event_store.append("a", evs("a", 1), NO_STREAM)
    assert (err.value.stream_id, err.value.expected, err.value.actual) == ("a", 0, 2)


async def test_append_at_the_current_version_succeeds(event_store: EventStore):
    await event_store.append("a", evs("a", 2), NO_STREAM)
    stored = await event_store.append("a", evs("a", 1), 2)
    assert stored[0].version == 3


async def test_append_at_a_stale_version_raises_concurrency_error(event_store: EventStore):
    await event_store.append("a", evs("a", 3), NO_STREAM)
    with pytest.raises(ConcurrencyError) as err:
        await event_store.append("a", evs("a", 1), 2)
    assert (err.value.expected, err.value.actual) == (2, 3)
    assert await event_store.stream_version("a") == 3


async def test_append_ahead_of_the_stream_raises_concurrency_error(event_store: EventStore):
    await event_store.append("a", evs("a", 1), NO_STREAM)
    with pytest.raises(ConcurrencyError) as err:
        await event_store.append("a", evs("a", 1), 5)
    assert (err.value.expected, err.value.actual) == (5, 1)


async def test_append_with_any_version_appends_at_the_end(event_store: EventStore):
    await event_store.append("a", evs("a", 2), ANY)
    stored = await event_store.append("a", evs("a", 1, 2), ANY)
    assert stored[0].version == 3
    assert [e.data["n"] for e in await event_store.read_stream("a")] == [0, 1, 2]


async def test_concurrent_appends_with_any_version_all_succeed(event_store: EventStore):
    results = await asyncio.gather(
        *(event_store.append("a", evs("a", 1, i), ANY) for i in range(10))
    )
    assert sorted(r[0].version for r in results) == list(range(1, 11))
    assert [e.version for e in await event_store.read_stream("a")] == list(range(1, 11))


async def test_re_append_of_stored_event_ids_returns_the_stored_events_and_adds_nothing(
    event_store: EventStore,
):
    batch = evs("a", 2)
    first = await event_store.append("a", batch, NO_STREAM)
    await event_store.append("a", evs("a", 1, 2), 2)
    for expected in (NO_STREAM, 2, ANY):
        again = await event_store.append("a", batch, expected)
        assert again == first
    assert len(await event_store.read_stream("a")) == 3
    assert await event_store.head_position() == 3
    assert len(await event_store.read_all()) == 3


async def test_re_append_of_a_batch_only_partly_stored_raises_conflict(event_store: EventStore):
    stored = await event_store.append("a", evs("a", 1), NO_STREAM)
    again = [stored[0], ev("a", 9)]
    with pytest.raises(Conflict):
        await event_store.append("a", again, ANY)
    with pytest.raises(Conflict):
        await event_store.append("a", again, NO_STREAM)
    assert summary(await event_store.read_all()) == [("a", 1, 0)]


async def test_an_event_naming_another_stream_is_refused(event_store: EventStore):
    with pytest.raises(ValueError):
        await event_store.append("a", [ev("a"), ev("b")], NO_STREAM)
    assert await event_store.read_all() == []


async def test_a_batch_repeating_an_event_id_is_refused(event_store: EventStore):
    one = ev("a")
    with pytest.raises(ValueError):
        await event_store.append("a", [one, one], NO_STREAM)
    assert await event_store.read_all() == []


async def test_appending_nothing_stores_nothing(event_store: EventStore):
    assert await event_store.append("a", [], NO_STREAM) == []
    assert await event_store.read_all() == []
    assert await event_store.stream_version("a") == 0


async def test_a_failed_append_stores_none_of_its_events(event_store: EventStore):
    await event_store.append("a", evs("a", 1), NO_STREAM)
    broken = [ev("a", 1), ev("a", 2, blob=object())]  # the second cannot be serialised
    with pytest.raises(TypeError):
        await event_store.append("a", broken, 1)
    assert summary(await event_store.read_stream("a")) == [("a", 1, 0)]
    assert await event_store.stream_version("a") == 1


async def test_a_failed_append_leaves_no_hole_that_stalls_readers(event_store: EventStore):
    with pytest.raises(TypeError):
        await event_store.append("a", [ev("a", 1, blob=object())], NO_STREAM)
    await event_store.append("a", evs("a", 1, 7), NO_STREAM)
    assert summary(await event_store.read_all()) == [("a", 1, 7)]


async def test_read_stream_between_versions(event_store: EventStore):
    await event_store.append("a", evs("a", 3), NO_STREAM)
    await event_store.append("a", evs("a", 3, 3), 3)
    assert [e.version for e in await event_store.read_stream("a", 2, 5)] == [2, 3, 4, 5]
    assert [e.version for e in await event_store.read_stream("a", 4)] == [4, 5, 6]
    assert [e.version for e in await event_store.read_stream("a", to_version=1)] == [1]
    assert await event_store.read_stream("a", 7) == []


async def test_read_stream_of_an_unknown_stream_is_empty(event_store: EventStore):
    assert await event_store.read_stream("nobody") == []
    assert await event_store.stream_version("nobody") == 0


async def test_read_stream_keeps_streams_apart(event_store: EventStore):
    await event_store.append("a", evs("a", 2), NO_STREAM)
    await event_store.append("ab", evs("ab", 1), NO_STREAM)
    assert {e.stream_id for e in await event_store.read_stream("a")} == {"a"}


async def test_read_all_returns_every_stream_in_global_order(event_store: EventStore):
    await event_store.append("a", evs("a", 2), NO_STREAM)
    await event_store.append("b", evs("b", 1, 2), NO_STREAM)
    await event_store.append("a", evs("a", 1, 3), 2)
    read = await event_store.read_all()
    assert summary(read) == [("a", 1, 0), ("a", 2, 1), ("b", 1, 2), ("a", 3, 3)]
    assert [e.position for e in read] == [1, 2, 3, 4]


async def test_read_all_from_a_position_with_a_limit(event_store: EventStore):
    await event_store.append("a", evs("a", 3), NO_STREAM)
    await event_store.append("b", evs("b", 3, 3), NO_STREAM)
    assert [e.position for e in await event_store.read_all(2, 3)] == [2, 3, 4]
    assert [e.position for e in await event_store.read_all(5, 100)] == [5, 6]
    assert [e.position for e in await event_store.read_all(1, 1)] == [1]
    assert await event_store.read_all(7) == []


async def test_read_all_in_pages_returns_each_event_once(event_store: EventStore):
    for i in range(5):
        await event_store.append(f"s{i}", evs(f"s{i}", 3, 3 * i), NO_STREAM)
    seen, position = [], 1
    while page := await event_store.read_all(position, 2):
        seen.extend(page)
        position = page[-1].position + 1
    assert [e.data["n"] for e in seen] == list(range(15))


async def test_a_reader_following_read_all_under_concurrent_writers_sees_every_event_once(
    event_store: EventStore,
):
    async def writer(w: int) -> None:
        for i in range(8):
            await event_store.append(f"w{w}", [ev(f"w{w}", i), ev(f"w{w}", i)], ANY)

    seen: list[StoredEvent] = []

    async def follow(until: asyncio.Task) -> None:
        position = 1
        while True:
            done = until.done()
            page = await event_store.read_all(position, 7)
            seen.extend(page)
            position = page[-1].position + 1 if page else position
            if done and not page:
                return
            await asyncio.sleep(0)

    writers = asyncio.ensure_future(asyncio.gather(*(writer(w) for w in range(6))))
    await follow(writers)
    await writers
    everything = await event_store.read_all(1, 10_000)
    assert len(everything) == 96
    assert [e.id for e in seen] == [e.id for e in everything]


# The MongoDB adapter chains commits: each claims the position after the last one it saw.


async def test_mongo_writer_with_a_stale_head_commits_after_the_writers_that_moved_it(
    mongo_backend: Backend,
):
    slow, fast = mongo_backend.event_store(), mongo_backend.event_store()
    await slow.append("a", [ev("a", 0)], NO_STREAM)
    await fast.append("b", [ev("b", 1), ev("b", 2)], NO_STREAM)
    await fast.append("c", [ev("c", 3)], NO_STREAM)
    stored = await slow.append("a", [ev("a", 4)], 1)
    assert (stored[0].version, stored[0].position) == (2, 5)
    read = await fast.read_all()
    assert [e.position for e in read] == [1, 2, 3, 4, 5]
    assert [e.data["n"] for e in read] == [0, 1, 2, 3, 4]


async def test_mongo_positions_stay_contiguous_under_writers_in_several_stores(
    mongo_backend: Backend,
):
    stores = [mongo_backend.event_store() for _ in range(4)]
    await asyncio.gather(
        *(
            store.append(f"s{i}-{j}", evs(f"s{i}-{j}", 1 + j % 3), ANY)
            for i, store in enumerate(stores)
            for j in range(6)
        )
    )
    read = await stores[0].read_all()
    assert [e.position for e in read] == list(range(1, len(read) + 1))
    assert len(read) == 4 * (2 * 1 + 2 * 2 + 2 * 3)
    assert await stores[1].head_position() == len(read)


async def test_mongo_read_all_stops_at_a_position_not_yet_committed(mongo_backend: Backend):
    store = mongo_backend.event_store()
    await store.append("a", evs("a", 1), NO_STREAM)
    late, early = ev("late", 10), ev("b", 20)
    assert await store._commit("b", [_doc(early)], 0, 3)  # position 2 is still committing
    assert summary(await store.read_all()) == [("a", 1, 0)]
    assert await store.read_all(2) == []
    assert await store._commit("late", [_doc(late)], 0, 2)
    assert summary(await store.read_all()) == [("a", 1, 0), ("late", 1, 10), ("b", 1, 20)]


async def test_mongo_a_commit_cannot_take_a_position_already_held(mongo_backend: Backend):
    store = mongo_backend.event_store()
    await store.append("a", evs("a", 2), NO_STREAM)
    assert not await store._commit("b", [_doc(ev("b"))], 0, 1)
    assert summary(await store.read_all()) == [("a", 1, 0), ("a", 2, 1)]


async def test_mongo_commit_refused_by_the_server_leaves_no_hole(mongo_backend: Backend):
    store = mongo_backend.event_store()
    with pytest.raises(DocumentTooLarge):
        await store.append("a", [ev("a", 1, blob="x" * 17_000_000)], NO_STREAM)
    await store.append("b", [ev("b", 20)], NO_STREAM)
    assert summary(await store.read_all()) == [("b", 1, 20)]


class _Counted:
    """A collection that counts the calls made to it (each one is a round trip)."""

    def __init__(self, inner) -> None:
        self._inner, self.calls = inner, []

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if callable(attr):
            self.calls.append(name)
        return attr


async def test_mongo_an_append_after_a_load_is_one_insert(mongo_backend: Backend):
    store = mongo_backend.event_store()
    await store.append("a", evs("a", 2), NO_STREAM)
    other = mongo_backend.event_store()
    await other.append("b", evs("b", 1), NO_STREAM)  # its indexes are set up on first use
    loaded = await other.read_stream("a")
    other._commits = counted = _Counted(other._commits)
    await other.append("a", evs("a", 1), loaded[-1].version)
    await other.append("a", evs("a", 100), ANY)
    assert counted.calls == ["insert_one", "insert_one"]


async def test_mongo_a_batch_of_a_hundred_large_events_is_one_commit(mongo_backend: Backend):
    store = mongo_backend.event_store()
    batch = [ev("a", n, blob="x" * 1_000) for n in range(100)]
    stored = await store.append("a", batch, NO_STREAM)
    assert [e.version for e in stored] == list(range(1, 101))
    assert await store.append("a", batch, ANY) == stored  # a retry, recognised by its first id
