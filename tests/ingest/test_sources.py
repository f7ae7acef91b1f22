"""Folders, CSV manifests and zip archives: layout, labels, and every way a file can be refused."""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from activelearn.ingest import sources
from activelearn.ingest.decode import MAX_FILE_BYTES, decode_image
from activelearn.ingest.sources import (
    SourceError,
    SourceItem,
    SourceScan,
    scan_folder,
    scan_manifest,
    scan_source,
    scan_zip,
)


def png(shade: int = 255) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), shade).save(buffer, format="PNG")
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def items(scan: SourceScan) -> list[SourceItem]:
    return list(scan.items)


def by_name(scan: SourceScan) -> dict[str, SourceItem]:
    return {re.split(r"[/!\\]", item.path)[-1]: item for item in scan.items}


def make_zip(members: dict[str, bytes], **options: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, **options) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- folders


def test_flat_folder_is_an_unlabeled_pool(tmp_path: Path) -> None:
    write(tmp_path / "b.png", png(1))
    write(tmp_path / "a.png", png(2))
    write(tmp_path / ".DS_Store", b"junk")
    write(tmp_path / "Thumbs.db", b"junk")
    scan = scan_folder(tmp_path)
    assert (scan.kind, scan.classes) == ("folder-flat", [])
    assert iter(scan.items) is scan.items, "items must be a lazy iterator"
    found = items(scan)
    assert [item.path for item in found] == [
        str(tmp_path.resolve() / "a.png"),
        str(tmp_path.resolve() / "b.png"),
    ]
    assert all(item.label is None and item.error is None for item in found)
    assert found[0].data == png(2)
    assert decode_image(found[0].data).width == 8


def test_class_sub_folders_are_labels(tmp_path: Path) -> None:
    write(tmp_path / "dog" / "1.png", png(1))
    write(tmp_path / "cat" / "1.png", png(2))
    write(tmp_path / "cat" / "nested" / "2.png", png(3))
    write(tmp_path / "loose.png", png(4))
    write(tmp_path / ".git" / "config", "hidden folder")
    write(tmp_path / "cat" / ".hidden.png", png(5))
    scan = scan_folder(tmp_path)
    assert (scan.kind, scan.classes) == ("folder-classes", ["cat", "dog"])
    labels = {
        Path(item.path).relative_to(tmp_path.resolve()).as_posix(): item.label
        for item in scan.items
    }
    assert labels == {
        "loose.png": None,
        "cat/1.png": "cat",
        "cat/nested/2.png": "cat",
        "dog/1.png": "dog",
    }


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlinks_are_reported_not_followed(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "secret.png", png())
    source = tmp_path / "source"
    write(source / "cat" / "real.png", png())
    (source / "cat" / "link.png").symlink_to(outside)
    (source / "linked-class").symlink_to(outside.parent, target_is_directory=True)
    scan = scan_folder(source)
    assert scan.classes == ["cat"], "a symlinked folder is not a class"
    found = by_name(scan)
    assert found["link.png"].error == "is a symlink (not followed)"
    assert found["link.png"].data is None
    assert found["linked-class"].error == "is a symlink (not followed)"
    assert found["real.png"].error is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_not_a_regular_file_and_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    (item,) = items(scan_folder(tmp_path))
    assert item.error == "not a regular file"


def test_oversize_file_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    write(tmp_path / "big.png", png() + b"\x00" * (MAX_FILE_BYTES + 100))
    (item,) = items(scan_folder(tmp_path))
    assert item.data is not None and len(item.data) == MAX_FILE_BYTES + 1


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="folder not found: "):
        scan_folder(tmp_path / "nope")
    with pytest.raises(SourceError, match="not a folder"):
        scan_folder(write(tmp_path / "file.png", png()))


def test_items_are_read_lazily(tmp_path: Path) -> None:
    for index in range(3):
        write(tmp_path / f"{index}.png", png(index))
    scan = scan_folder(tmp_path)
    first = next(scan.items)
    (tmp_path / "2.png").unlink()  # removed after the scan started: reported, not a crash
    rest = list(scan.items)
    assert first.error is None
    assert [item.error for item in rest] == [None, "file not found"]


# ----------------------------------------------------------------------------------- manifests


def test_manifest_with_labels_splits_relative_paths_and_extra_columns(tmp_path: Path) -> None:
    write(tmp_path / "images" / "a.png", png(1))
    write(tmp_path / "images" / "b.png", png(2))
    write(tmp_path / "elsewhere" / "c.png", png(3))
    absolute = tmp_path / "elsewhere" / "c.png"
    manifest = write(
        tmp_path / "lists" / "manifest.csv",
        " Path ,LABEL, Split ,notes\n"
        "../images/b.png,dog,test,x\n"
        "../images/a.png,cat,,y\n"
        f"{absolute},dog,EVAL,z\n"
        "\n"
        "../images/a.png,,pool\n",
    )
    scan = scan_manifest(manifest)
    assert (scan.kind, scan.classes) == ("manifest", ["dog", "cat"])
    found = items(scan)
    assert [Path(item.path).name for item in found] == ["b.png", "a.png", "c.png", "a.png"]
    assert found[0].path == str((tmp_path / "images" / "b.png").resolve())
    assert [(item.label, item.split) for item in found] == [
        ("dog", "test"),
        ("cat", None),
        ("dog", "eval"),
        (None, "pool"),
    ]
    assert all(item.error is None for item in found)
    assert found[1].data == png(1)


def test_manifest_without_path_column_names_the_columns_found(tmp_path: Path) -> None:
    manifest = write(tmp_path / "manifest.csv", "file,class\na.png,cat\n")
    with pytest.raises(SourceError) as caught:
        scan_manifest(manifest)
    assert str(caught.value) == "manifest.csv has no 'path' column (columns found: file, class)"


def test_manifest_row_errors(tmp_path: Path) -> None:
    write(tmp_path / "a.png", png())
    manifest = write(
        tmp_path / "m.csv",
        "path,label,split\na.png,cat,pool\n,cat,pool\na.png,cat,x\nmissing.png,cat,\n",
    )
    found = items(scan_manifest(manifest))
    assert [item.error for item in found] == [
        None,
        "manifest row 3: path is empty",
        "manifest row 4: unknown split 'x' (expected pool, eval or test)",
        "file not found",
    ]
    assert all(item.data is None for item in found[1:])


def test_latin1_manifest_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label\ncafé.png,crème\n".encode("latin-1"))
    with pytest.raises(SourceError, match=r"m\.csv is not UTF-8 text: byte 0xe9 on line 2"):
        scan_manifest(manifest)


def test_utf8_bom_semicolons_and_non_ascii_labels(tmp_path: Path) -> None:
    write(tmp_path / "café.png", png())
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufeffpath;label\ncafé.png;crème\n".encode())
    scan = scan_manifest(manifest)
    assert scan.classes == ["crème"]
    (item,) = items(scan)
    assert (item.label, item.error) == ("crème", None)


def test_manifest_problems_with_the_whole_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="manifest not found"):
        scan_manifest(tmp_path / "none.csv")
    with pytest.raises(SourceError, match="is empty"):
        scan_manifest(write(tmp_path / "empty.csv", ""))
    with pytest.raises(SourceError, match="binary data"):
        scan_manifest(write(tmp_path / "image.csv", png()))
    with pytest.raises(SourceError, match="more than one 'path' column"):
        scan_manifest(write(tmp_path / "twice.csv", "path,Path\na,b\n"))


# ---------------------------------------------------------------------------------------- zips


def test_zip_with_class_folders_under_one_top_folder() -> None:
    data = make_zip(
        {
            "pets/cat/1.png": png(1),
            "pets/dog/2.png": png(2),
            "pets/.DS_Store": b"junk",
            "__MACOSX/pets/cat/._1.png": b"junk",
        }
    )
    scan = scan_zip(data, name="pets.zip")
    assert (scan.kind, scan.classes) == ("zip", ["cat", "dog"])
    found = items(scan)
    assert [(item.path, item.label) for item in found] == [
        ("pets.zip!pets/cat/1.png", "cat"),
        ("pets.zip!pets/dog/2.png", "dog"),
    ]
    assert found[0].data == png(1)


def test_flat_zip_from_a_path(tmp_path: Path) -> None:
    archive = write(tmp_path / "flat.zip", make_zip({"a.png": png(), "b.png": png(9)}))
    scan = scan_zip(archive)
    assert scan.classes == []
    found = items(scan)
    assert [item.path for item in found] == [
        f"{archive.resolve()}!a.png",
        f"{archive.resolve()}!b.png",
    ]
    assert all(item.label is None for item in found)


def test_manifest_inside_a_zip() -> None:
    data = make_zip(
        {
            "set/manifest.csv": b"path,label,split\nimg/a.png,cat,test\n./img/b.png,dog,\n"
            b"img/missing.png,cat,\n../outside.png,cat,\n",
            "set/img/a.png": png(1),
            "set/img/b.png": png(2),
            "set/img/unlisted.png": png(3),
        }
    )
    scan = scan_zip(data)
    assert (scan.kind, scan.classes) == ("zip", ["cat", "dog"])
    found = items(scan)
    assert [(item.path, item.label, item.split, item.error) for item in found] == [
        ("upload.zip!set/img/a.png", "cat", "test", None),
        ("upload.zip!set/img/b.png", "dog", None, None),
        ("upload.zip!img/missing.png", "cat", None, "file not found in zip"),
        ("upload.zip!../outside.png", "cat", None, "unsafe path in zip (escapes the archive)"),
    ]
    assert found[1].data == png(2)


def test_several_csvs_at_the_top_of_a_zip() -> None:
    with pytest.raises(SourceError, match="several CSV files"):
        scan_zip(make_zip({"a.csv": b"path\n", "b.csv": b"path\n", "x.png": png()}))


@pytest.mark.parametrize(
    "name", ["../evil.png", "/etc/evil.png", "C:/evil.png", "a/../../evil.png", "..\\evil.png"]
)
def test_escaping_member_names_are_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(tmp_path.rglob("*"))
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # ZipInfo would sanitise the name; an attacker's tool does not
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, png())
        archive.writestr("fine.png", png())
    archive_path = write(work / "evil.zip", buffer.getvalue())
    found = items(scan_zip(archive_path, name="evil.zip"))
    assert [(item.path, item.error) for item in found] == [
        (f"evil.zip!{name}", "unsafe path in zip (escapes the archive)"),
        ("evil.zip!fine.png", None),
    ]
    assert sorted(tmp_path.rglob("*")) == sorted([*before, archive_path])
    assert not Path("/etc/evil.png").exists()


def test_nested_zip_is_not_imported() -> None:
    inner = make_zip({"a.png": png()})
    data = make_zip({"inner.zip": inner, "disguised.png": inner, "ok.png": png()})
    found = by_name(scan_zip(data))
    assert found["inner.zip"].error == "nested zip archives are not imported"
    assert found["disguised.png"].error == "nested zip archives are not imported"
    assert found["ok.png"].error is None


def test_zip_bomb_is_refused() -> None:
    data = make_zip({"zeros.png": bytes(30 * 2**20)})
    assert len(data) < 100_000  # ~1000x compression
    with pytest.raises(SourceError, match=r"zip archive refused: member 'zeros\.png'.*zip bomb"):
        scan_zip(data)


def test_declared_total_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "ZIP_MAX_TOTAL_BYTES", 100)
    with pytest.raises(SourceError, match="would unpack to"):
        scan_zip(make_zip({"a.png": png(), "b.png": png(3)}))


def test_too_many_members_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "ZIP_MAX_MEMBERS", 2)
    with pytest.raises(SourceError, match="3 members"):
        scan_zip(make_zip({"a.png": png(), "b.png": png(3), "c.png": png(4)}))


def test_non_utf8_member_name() -> None:
    data = make_zip({"cafX.png": png()})
    patched = data.replace(b"cafX.png", b"caf\x82.png")  # cp437 0x82 is "é"; not UTF-8
    assert patched.count(b"caf\x82.png") == 2
    (item,) = items(scan_zip(patched))
    assert item.path == "upload.zip!café.png"
    assert item.data == png()


def test_encrypted_member() -> None:
    data = bytearray(make_zip({"secret.png": png(), "open.png": png(5)}))
    # Set the "encrypted" flag of secret.png in its local and central headers.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.index(signature) + offset
        data[start] |= 0x1
    found = by_name(scan_zip(bytes(data)))
    assert found["secret.png"].error.startswith("encrypted")
    assert found["open.png"].error is None


def test_symlink_member_is_not_followed() -> None:
    info = zipfile.ZipInfo("link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, "/etc/passwd")
    (item,) = items(scan_zip(buffer.getvalue()))
    assert item.error == "is a symlink (not followed)"


def test_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"not a zip file: a\.zip"):
        scan_zip(b"this is text", name="a.zip")
    with pytest.raises(SourceError, match="zip file not found"):
        scan_zip(tmp_path / "none.zip")


def test_corrupt_member_is_an_item_error() -> None:
    data = bytearray(make_zip({"a.png": png()}))
    start = data.index(b"PK\x03\x04") + 30 + len("a.png")
    data[start + 5] ^= 0xFF  # damage the compressed stream
    (item,) = items(scan_zip(bytes(data)))
    assert item.error == "corrupt zip member"


# ------------------------------------------------------------------------------------ dispatch


def test_scan_source_dispatches_by_content(tmp_path: Path) -> None:
    write(tmp_path / "folder" / "a.png", png())
    assert scan_source(tmp_path / "folder").kind == "folder-flat"
    disguised = write(tmp_path / "upload.dat", make_zip({"a.png": png()}))
    assert scan_source(disguised).kind == "zip"
    manifest = write(tmp_path / "folder" / "list.csv", "path\na.png\n")
    assert scan_source(manifest).kind == "manifest"
    with pytest.raises(SourceError, match=r"not a zip file: fake\.zip"):
        scan_source(write(tmp_path / "fake.zip", "path\n"))
    with pytest.raises(SourceError, match="not found"):
        scan_source(tmp_path / "nothing")


def test_items_iterator_type() -> None:
    scan = scan_zip(make_zip({"a.png": png()}))
    assert isinstance(scan.items, Iterator)
