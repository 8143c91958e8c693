"""The bundle unpacker against a corpus of malicious archives: each is refused with the
offending entry named, and nothing is written outside the unpack folder (nor left inside it)."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from services.training.unpack import BundleTooLarge, Limits, NotAnArchive, UnsafeBundle, unpack


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def make_zip(path: Path, files: list[tuple[str, bytes, int | None]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in files:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


@pytest.fixture
def place(tmp_path: Path):
    """(archive folder, unpack folder, a sibling folder that must stay empty)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    return tmp_path / "archives", tmp_path / "sandbox" / "bundle", outside


DEFAULTS = Limits()


def refused(
    archive: Path, dest: Path, outside: Path, error: type, name: str, limits: Limits = DEFAULTS
):
    with pytest.raises(error) as caught:
        unpack(archive, dest, limits)
    assert caught.value.extra.get("entry", name) == name or name in caught.value.detail
    assert name in caught.value.detail
    assert list(outside.iterdir()) == [], "something was written outside the bundle"
    assert list(dest.iterdir()) == [], "a refused bundle leaves nothing behind"
    assert not (dest.parent / "evil").exists() and not (dest.parent.parent / "evil").exists()
    return caught.value


def test_a_plain_bundle_unpacks_with_its_folders_and_internal_links(place):
    archives, dest, _ = place
    archives.mkdir()
    archive = make_tar(
        archives / "ok.tgz",
        [
            (entry("pkg", tarfile.DIRTYPE), None),
            (entry("pkg/train.py"), b"print('hi')\n"),
            (entry("data/a.csv"), b"x,y\n1,2\n"),
            (entry("latest.csv", tarfile.SYMTYPE, "data/a.csv"), None),
            (entry("copy.py", tarfile.LNKTYPE, "pkg/train.py"), None),
        ],
    )
    assert unpack(archive, dest) == 3
    assert (dest / "latest.csv").read_text() == "x,y\n1,2\n"
    assert (dest / "copy.py").read_text() == "print('hi')\n" and not (dest / "copy.py").is_symlink()


@pytest.mark.parametrize("name", ["../evil", "pkg/../../evil", "./../evil"])
def test_tar_slip_is_refused(place, name):
    archives, dest, outside = place
    archives.mkdir()
    archive = make_tar(archives / "slip.tgz", [(entry("ok.py"), b"1"), (entry(name), b"pwned")])
    assert refused(archive, dest, outside, UnsafeBundle, name).status == 400


def test_an_absolute_tar_path_is_refused(place):
    archives, dest, outside = place
    archives.mkdir()
    target = str(outside / "evil")
    refused(
        make_tar(archives / "abs.tgz", [(entry(target), b"pwned")]),
        dest,
        outside,
        UnsafeBundle,
        target,
    )


def test_zip_slip_is_refused(place):
    archives, dest, outside = place
    archives.mkdir()
    archive = make_zip(
        archives / "slip.zip", [("ok.py", b"1", None), ("../../evil", b"pwned", None)]
    )
    refused(archive, dest, outside, UnsafeBundle, "../../evil")


def test_an_absolute_zip_path_is_refused(place):
    archives, dest, outside = place
    archives.mkdir()
    name = str(outside / "evil")
    refused(
        make_zip(archives / "abs.zip", [(name, b"pwned", None)]), dest, outside, UnsafeBundle, name
    )


def test_a_tar_symlink_pointing_outside_is_refused(place):
    archives, dest, outside = place
    archives.mkdir()
    archive = make_tar(
        archives / "link.tgz",
        [(entry("escape", tarfile.SYMTYPE, str(outside)), None), (entry("escape/evil"), b"pwned")],
    )
    refused(archive, dest, outside, UnsafeBundle, "escape")


def test_a_relative_symlink_climbing_out_is_refused(place):
    archives, dest, outside = place
    archives.mkdir()
    archive = make_tar(
        archives / "rel.tgz", [(entry("data/up", tarfile.SYMTYPE, "../../outside"), None)]
    )
    refused(archive, dest, outside, UnsafeBundle, "data/up")


def test_a_zip_symlink_pointing_outside_is_refused(place):
    archives, dest, outside = place
    archives.mkdir()
    archive = make_zip(
        archives / "link.zip", [("escape", str(outside).encode(), stat.S_IFLNK | 0o777)]
    )
    refused(archive, dest, outside, UnsafeBundle, "escape")


def test_a_hardlink_to_a_file_outside_is_refused(place):
    archives, dest, outside = place
    archives.mkdir()
    secret = outside / "secret"
    archive = make_tar(
        archives / "hard.tgz", [(entry("stolen", tarfile.LNKTYPE, str(secret)), None)]
    )
    try:
        refused(archive, dest, outside, UnsafeBundle, "stolen")
    finally:
        secret.unlink(missing_ok=True)


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_files_are_refused(place, kind):
    archives, dest, outside = place
    archives.mkdir()
    refused(
        make_tar(archives / "dev.tgz", [(entry("dev/null", kind), None)]),
        dest,
        outside,
        UnsafeBundle,
        "dev/null",
    )


def test_a_zip_bomb_stops_at_the_unpacked_size_limit(place):
    archives, dest, outside = place
    archives.mkdir()
    archive = make_zip(archives / "bomb.zip", [("zeros.bin", b"\0" * (20 << 20), None)])
    assert archive.stat().st_size < 100_000
    error = refused(archive, dest, outside, BundleTooLarge, "zeros.bin", Limits(max_bytes=1 << 20))
    assert error.status == 413


def test_a_hundred_thousand_entries_are_refused_at_the_entry_limit(place):
    archives, dest, outside = place
    archives.mkdir()
    path = many_entries(archives / "many.tar", 100_000)
    error = refused(path, dest, outside, BundleTooLarge, "f002000", Limits(max_entries=2_000))
    assert error.status == 413


def many_entries(path: Path, count: int) -> Path:
    """A tar of `count` empty files, written header by header (tarfile would take seconds)."""
    template = bytearray(tarfile.TarInfo("f000000").tobuf(format=tarfile.USTAR_FORMAT))
    with open(path, "wb") as out:
        for i in range(count):
            header = template.copy()
            header[0:7] = f"f{i:06d}".encode()
            header[148:156] = b" " * 8
            header[148:156] = f"{sum(header):06o}\0 ".encode()
            out.write(header)
        out.write(b"\0" * 1024)
    return path


def test_something_that_is_no_archive_is_unsupported(place):
    archives, dest, _ = place
    archives.mkdir()
    (archives / "x.bin").write_bytes(b"#!/bin/sh\necho not an archive\n")
    with pytest.raises(NotAnArchive) as caught:
        unpack(archives / "x.bin", dest)
    assert caught.value.status == 415
