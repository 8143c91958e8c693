"""The artifact-store contract, run against every adapter: a folder (file://) and a real
S3-compatible server (s3://, gofakes3 from `services.sh up s3`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlplane.artifacts import open_store
from mlplane.errors import Invalid, NotFound
from s3server import ACCESS, SECRET


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if request.param == "file":
        return open_store(f"file://{tmp_path / 'artifacts'}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    bucket, url = request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_url")
    return open_store(f"s3://{bucket}/mlplane?endpoint={url}")


async def test_what_is_put_is_got_back_byte_for_byte(store):
    data = os.urandom(70_000)
    uri = await store.put_bytes("checkpoints/c1/model/1/model.onnx", data)
    assert uri.endswith("checkpoints/c1/model/1/model.onnx")
    assert await store.get_bytes("checkpoints/c1/model/1/model.onnx") == data
    assert await store.exists("checkpoints/c1/model/1/model.onnx")


async def test_listing_is_by_prefix_and_sorted(store):
    for key in ("b/2.txt", "a/1.txt", "b/1.txt", "bb/x.txt"):
        await store.put_bytes(key, key.encode())
    assert [i.key for i in await store.list("b/")] == ["b/1.txt", "b/2.txt"]
    assert [(i.key, i.size) for i in await store.list("a")] == [("a/1.txt", 7)]


async def test_a_missing_artifact_is_not_found(store, tmp_path):
    with pytest.raises(NotFound):
        await store.get_file("nothing/here", tmp_path / "x")
    assert not await store.exists("nothing/here")


async def test_a_tree_goes_in_and_comes_out_with_its_layout(store, tmp_path):
    source = tmp_path / "model"
    (source / "1").mkdir(parents=True)
    (source / "config.pbtxt").write_text('name: "m"\n')
    (source / "1" / "model.onnx").write_bytes(b"onnx")
    await store.put_tree("checkpoints/c2/m", source)
    await store.get_tree("checkpoints/c2/m", tmp_path / "back")
    assert (tmp_path / "back" / "1" / "model.onnx").read_bytes() == b"onnx"
    assert (tmp_path / "back" / "config.pbtxt").read_text() == 'name: "m"\n'


@pytest.mark.parametrize("key", ["/etc/passwd", "a/../../b", "", "a\\b"])
async def test_keys_cannot_leave_the_store(store, key):
    with pytest.raises(Invalid):
        await store.put_bytes(key, b"x")
