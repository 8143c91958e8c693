"""Contract of the read-model store port, run against every adapter (SQLite, MongoDB on FerretDB)."""

from __future__ import annotations

import asyncio

import pytest
from mlplane.errors import Invalid
from mlplane.readmodels import Doc, ReadModelStore, Write


def W(key: str, position: int, **fields: object) -> Write:
    return Write(key, dict(fields), position)


def keys(docs: list[Doc]) -> list[str]:
    return [d["_key"] for d in docs]


async def walk(
    store: ReadModelStore, collection: str, limit: int, **options: object
) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = await store.query(collection, limit=limit, after=after, **options)
        pages.append(keys(page.data))
        if not page.has_more:
            assert page.next_cursor is None
            return pages
        after = page.next_cursor


async def test_put_many_then_get_returns_each_document_with_key_and_position(
    read_models: ReadModelStore,
):
    await read_models.put_many("c", [W("a", 1, name="A", tags=["x"]), W("b", 2, name="B")])
    assert await read_models.get("c", "a") == {"_key": "a", "_pos": 1, "name": "A", "tags": ["x"]}
    assert await read_models.get("c", "missing") is None
    many = await read_models.get_many("c", ["a", "b", "missing"])
    assert sorted(many) == ["a", "b"]
    assert many["b"]["name"] == "B"


async def test_collections_keep_their_documents_apart(read_models: ReadModelStore):
    await read_models.put_many("c", [W("a", 1, n=1)])
    await read_models.put_many("d", [W("a", 1, n=2)])
    assert (await read_models.get("c", "a"))["n"] == 1
    assert (await read_models.get("d", "a"))["n"] == 2


async def test_a_write_at_a_later_position_replaces_the_whole_document(read_models: ReadModelStore):
    await read_models.put_many("c", [W("a", 1, name="A", error="boom")])
    await read_models.put_many("c", [W("a", 2, name="A2")])
    assert await read_models.get("c", "a") == {"_key": "a", "_pos": 2, "name": "A2"}


async def test_a_write_at_or_below_the_stored_position_is_a_no_op(read_models: ReadModelStore):
    await read_models.put_many("c", [W("a", 5, v="five")])
    await read_models.put_many("c", [W("a", 5, v="again"), W("b", 1, v="new")])
    await read_models.put_many("c", [W("a", 3, v="older")])
    assert await read_models.get("c", "a") == {"_key": "a", "_pos": 5, "v": "five"}
    assert (await read_models.get("c", "b"))["v"] == "new"
    assert await read_models.positions("c", ["a", "b", "zz"]) == {"a": 5, "b": 1}


async def test_a_tombstone_hides_the_document_and_keeps_its_position(read_models: ReadModelStore):
    await read_models.put_many("c", [W("a", 1, v=1), W("b", 1, v=2)])
    await read_models.put_many("c", [Write("a", None, 4)])
    assert await read_models.get("c", "a") is None
    assert await read_models.get_many("c", ["a", "b"]) == {"b": {"_key": "b", "_pos": 1, "v": 2}}
    assert keys((await read_models.query("c")).data) == ["b"]
    assert (await read_models.query("c")).count == 1
    assert list(await read_models.all_docs("c")) == ["b"]
    assert await read_models.positions("c", ["a"]) == {"a": 4}


async def test_a_tombstone_at_or_below_the_stored_position_is_a_no_op(read_models: ReadModelStore):
    await read_models.put_many("c", [W("a", 5, v=1)])
    await read_models.put_many("c", [Write("a", None, 5), Write("a", None, 2)])
    assert (await read_models.get("c", "a"))["v"] == 1


async def test_a_write_below_a_tombstone_does_not_resurrect_the_document(
    read_models: ReadModelStore,
):
    await read_models.put_many("c", [Write("a", None, 5)])
    await read_models.put_many("c", [W("a", 3, v=1)])
    assert await read_models.get("c", "a") is None
    await read_models.put_many("c", [W("a", 6, v=2)])
    assert (await read_models.get("c", "a"))["v"] == 2


async def test_concurrent_writers_of_a_new_document_leave_the_latest_position(
    read_models: ReadModelStore,
):
    await asyncio.gather(*(read_models.put_many("c", [W("k", p, p=p)]) for p in range(1, 21)))
    assert await read_models.get("c", "k") == {"_key": "k", "_pos": 20, "p": 20}


async def test_query_filters_on_equality(read_models: ReadModelStore):
    await read_models.put_many(
        "c",
        [
            W("a", 1, status="ready", n=1),
            W("b", 1, status="failed", n=2),
            W("c", 1, status="ready", n=3),
        ],
    )
    page = await read_models.query("c", {"status": "ready"})
    assert keys(page.data) == ["a", "c"] and page.count == 2
    assert keys((await read_models.query("c", {"status": "ready", "n": 3})).data) == ["c"]
    assert keys((await read_models.query("c", {"_key": "b"})).data) == ["b"]
    assert (await read_models.query("c", {"status": "gone"})).count == 0


async def test_query_filters_on_any_of_several_values(read_models: ReadModelStore):
    await read_models.put_many(
        "c", [W("a", 1, status="ready"), W("b", 1, status="failed"), W("c", 1, status="queued")]
    )
    assert keys((await read_models.query("c", {"status": ["ready", "queued"]})).data) == ["a", "c"]
    assert keys((await read_models.query("c", {"_key": ("a", "b")})).data) == ["a", "b"]
    assert (await read_models.query("c", {"status": []})).count == 0


async def test_query_filters_on_null_and_nested_fields(read_models: ReadModelStore):
    await read_models.put_many(
        "c",
        [
            W("a", 1, owner=None, spec={"kind": "gpu"}),
            W("b", 1, spec={"kind": "cpu"}),
            W("c", 1, owner="u"),
        ],
    )
    assert keys((await read_models.query("c", {"owner": None})).data) == ["a", "b"]
    assert keys((await read_models.query("c", {"spec.kind": "gpu"})).data) == ["a"]


@pytest.mark.parametrize(
    "filters",
    [{"$where": "1"}, {"name": {"$ne": None}}, {"a b": 1}, {"name": [{"$gt": ""}]}],
    ids=["operator-field", "operator-value", "odd-field", "operator-in-list"],
)
async def test_a_filter_that_is_not_plain_equality_is_refused(
    read_models: ReadModelStore, filters: dict
):
    await read_models.put_many("c", [W("a", 1, name="A")])
    with pytest.raises(Invalid):
        await read_models.query("c", filters)


async def test_sorting_on_an_odd_field_is_refused(read_models: ReadModelStore):
    with pytest.raises(Invalid):
        await read_models.query("c", sort="name); DROP TABLE docs; --")


async def test_query_sorts_ascending_and_descending_on_a_field(read_models: ReadModelStore):
    await read_models.put_many(
        "c", [W("a", 1, n=3), W("b", 1, n=1), W("c", 1, n=2), W("d", 1, n=10)]
    )
    assert keys((await read_models.query("c", sort="n")).data) == ["b", "c", "a", "d"]
    assert keys((await read_models.query("c", sort="n", descending=True)).data) == [
        "d",
        "a",
        "c",
        "b",
    ]
    assert keys((await read_models.query("c", descending=True)).data) == ["d", "c", "b", "a"]


async def test_query_sorts_ties_by_key(read_models: ReadModelStore):
    await read_models.put_many("c", [W("b", 1, n=1), W("a", 1, n=1), W("c", 1, n=0)])
    assert keys((await read_models.query("c", sort="n")).data) == ["c", "a", "b"]
    assert keys((await read_models.query("c", sort="n", descending=True)).data) == ["b", "a", "c"]


async def test_query_pages_report_count_and_more(read_models: ReadModelStore):
    await read_models.put_many("c", [W(f"k{i}", 1, n=i) for i in range(5)])
    page = await read_models.query("c", limit=2)
    assert (len(page.data), page.count, page.has_more) == (2, 5, True)
    last = await read_models.query("c", limit=5)
    assert (len(last.data), last.has_more, last.next_cursor) == (5, False, None)


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("limit", [1, 3, 7])
async def test_cursor_pagination_walks_every_document_once_across_ties(
    read_models: ReadModelStore, descending: bool, limit: int
):
    writes = [W(f"k{i:02d}", 1, group=i % 3, kind="m") for i in range(20)]
    writes += [W(f"n{i}", 1, kind="m") for i in range(3)]  # no `group`: sorts as null
    writes += [W(f"z{i}", 1, group=None, kind="m") for i in range(2)]
    writes += [W("other", 1, group=1, kind="x")]
    await read_models.put_many("c", writes)
    pages = await walk(
        read_models, "c", limit, sort="group", descending=descending, filters={"kind": "m"}
    )
    walked = [k for page in pages for k in page]
    everything = (
        await read_models.query("c", {"kind": "m"}, sort="group", descending=descending, limit=100)
    ).data
    assert walked == keys(everything)
    assert sorted(walked) == sorted(w.key for w in writes if w.key != "other")
    assert all(len(page) <= limit for page in pages)
    nulls = {"n0", "n1", "n2", "z0", "z1"}
    expected_nulls = walked[-5:] if descending else walked[:5]
    assert set(expected_nulls) == nulls


async def test_cursor_pagination_on_a_nested_field(read_models: ReadModelStore):
    await read_models.put_many("c", [W(f"k{i}", 1, spec={"rank": i % 2}) for i in range(6)])
    pages = await walk(read_models, "c", 2, sort="spec.rank")
    assert [k for page in pages for k in page] == ["k0", "k2", "k4", "k1", "k3", "k5"]


async def test_cursor_pagination_by_key(read_models: ReadModelStore):
    await read_models.put_many("c", [W(f"k{i}", 1) for i in range(5)])
    assert await walk(read_models, "c", 2) == [["k0", "k1"], ["k2", "k3"], ["k4"]]
    assert await walk(read_models, "c", 2, descending=True) == [["k4", "k3"], ["k2", "k1"], ["k0"]]


async def test_a_cursor_that_this_store_did_not_issue_is_refused(read_models: ReadModelStore):
    with pytest.raises(Invalid):
        await read_models.query("c", after="not-a-cursor")


async def test_checkpoints_start_at_zero_and_never_move_backwards(read_models: ReadModelStore):
    assert await read_models.get_checkpoint("runner") == 0
    await read_models.set_checkpoint("runner", 10)
    await read_models.set_checkpoint("runner", 4)
    assert await read_models.get_checkpoint("runner") == 10
    await read_models.set_checkpoint("runner", 11)
    assert await read_models.get_checkpoint("runner") == 11
    assert await read_models.get_checkpoint("other") == 0


async def test_concurrent_first_checkpoints_keep_the_highest(read_models: ReadModelStore):
    await asyncio.gather(*(read_models.set_checkpoint("fresh", p) for p in range(1, 11)))
    assert await read_models.get_checkpoint("fresh") == 10


async def test_a_name_without_alias_resolves_to_itself(read_models: ReadModelStore):
    assert await read_models.resolve("orders") == "orders"


async def test_reads_through_an_alias_see_the_physical_collection(read_models: ReadModelStore):
    await read_models.put_many("orders", [W("old", 1, v="live")])
    await read_models.put_many("orders__2", [W("new", 1, v="rebuilt")])
    await read_models.set_alias("orders", "orders__2")
    assert await read_models.resolve("orders") == "orders__2"
    assert await read_models.get("orders", "new") == {"_key": "new", "_pos": 1, "v": "rebuilt"}
    assert await read_models.get("orders", "old") is None
    assert keys((await read_models.query("orders")).data) == ["new"]
    assert list(await read_models.all_docs("orders")) == ["new"]


async def test_an_alias_can_be_moved(read_models: ReadModelStore):
    await read_models.put_many("orders__3", [W("third", 1)])
    await read_models.set_alias("orders", "orders__2")
    await read_models.set_alias("orders", "orders__3")
    assert await read_models.resolve("orders") == "orders__3"
    assert await read_models.get("orders", "third") is not None


async def test_drop_deletes_a_collection_and_its_checkpoint(read_models: ReadModelStore):
    await read_models.put_many("c", [W("a", 1)])
    await read_models.put_many("d", [W("a", 1)])
    await read_models.set_checkpoint("c", 7)
    assert {"c", "d"} <= set(await read_models.collections())
    await read_models.drop("c")
    assert await read_models.all_docs("c") == {}
    assert await read_models.get_checkpoint("c") == 0
    assert "c" not in await read_models.collections()
    assert await read_models.get("d", "a") is not None


async def test_documents_with_dots_and_dollars_in_their_keys_round_trip(
    read_models: ReadModelStore,
):
    labels = {"app.kubernetes.io/name": "triton", "$ref": "x", "plain": {"a.b": [{"c.d": 1}]}}
    await read_models.put_many("c", [W("a", 1, labels=labels, status="ok")])
    assert (await read_models.get("c", "a"))["labels"] == labels
    page = await read_models.query("c", {"status": "ok"})
    assert page.data[0]["labels"] == labels
    assert (await read_models.all_docs("c"))["a"]["labels"] == labels


async def test_a_batch_larger_than_one_bulk_command_is_written_whole(read_models: ReadModelStore):
    """Rebuilds write pages of thousands of documents; the Mongo adapter sends them in chunks
    (a FerretDB on PostgreSQL hangs on a command of 50 statements or more)."""
    keys = [f"k{i:03}" for i in range(130)]
    await read_models.put_many("big", [Write(k, {"n": 1}, 1) for k in keys])
    await read_models.put_many("big", [Write(k, {"n": 2}, 2) for k in keys])
    docs = await read_models.get_many("big", keys)
    assert sorted(docs) == keys and {d["n"] for d in docs.values()} == {2}
