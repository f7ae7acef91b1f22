"""Hostile and broken input through the public API: a clear message, no crash, no label lost.

Each case starts from a project that already holds a label, feeds it one kind of bad input, and
checks the outcome a user sees (the report's reason or the error's message) and that the label is
still there.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activelearn import ImportFailed, InvalidClasses, Project, Workspace
from tests.conftest import png_bytes, write_images


def _image(mode: str, size: tuple[int, int] = (20, 20), fmt: str = "PNG", **save: object) -> bytes:
    rng = np.random.default_rng(abs(hash((mode, size, fmt))) % 2**32)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    elif mode == "P":
        image = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(
            "P", palette=Image.Palette.ADAPTIVE
        )
    else:
        bands = {"L": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
        array = rng.integers(0, 255, (*size[::-1], bands), dtype=np.uint8)
        image = Image.fromarray(array[:, :, 0] if bands == 1 else array, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 9))


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def labeled(sqlite_workspace: Workspace, tmp_path: Path) -> Project:
    project = sqlite_workspace.create_project("p", classes=["a", "b"])
    project.import_images(write_images(tmp_path / "seed", 3, start=1000)[0].parent)
    task = project.next_task(annotator="ana")
    assert task is not None
    project.submit(task.id, label="a", annotator="ana")
    return project


def _label_still_there(project: Project) -> None:
    labels = project.labels()
    assert labels[labels["annotator"] == "ana"]["label"].tolist() == ["a"]


# (case id, file name, bytes, expected substring of the reason, or None when it must be accepted)
FILE_CASES: list[tuple[str, str, Callable[[], bytes], str | None]] = [
    ("corrupt-png", "c.png", lambda: png_bytes(1)[:50] + b"\x00garbage" * 30, "corrupt"),
    ("truncated-jpeg", "t.jpg", lambda: _image("RGB", (64, 64), "JPEG")[:400], "corrupt"),
    ("zero-bytes", "z.png", lambda: b"", "empty file"),
    ("text-named-png", "notes.png", lambda: b"hello, I am text\n" * 10, "not an image"),
    ("png-named-jpg", "really-a-png.jpg", lambda: png_bytes(2), None),
    ("decompression-bomb", "bomb.png", lambda: _png_claiming(12_000, 12_000), "too large"),
    ("svg", "x.svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "SVG"),
    ("pdf", "x.pdf", lambda: b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n", "PDF"),
    ("fits", "x.fits", lambda: b"SIMPLE  =                    T" + b" " * 2850, "FITS"),
    ("cmyk-jpeg", "cmyk.jpg", lambda: _image("CMYK", fmt="JPEG"), None),
    ("16-bit-png", "deep.png", lambda: _image("I;16"), None),
    ("palette-png", "pal.png", lambda: _image("P"), None),
    ("alpha-png", "alpha.png", lambda: _image("RGBA"), None),
    ("extreme-aspect", "strip.png", lambda: _image("L", (4000, 1)), None),
    ("huge-dimensions", "huge.bmp", lambda: _png_claiming(200_000, 300), "too large"),
]


@pytest.mark.parametrize(
    ("name", "data", "expected"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_bad_file_in_folder(
    labeled: Project, tmp_path: Path, name: str, data: Callable[[], bytes], expected: str | None
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / name).write_bytes(data())
    report = labeled.import_images(folder)
    if expected is None:
        assert [Path(p).name for p in report.accepted] == [name], report.rejected
    else:
        assert report.accepted == []
        assert len(report.rejected) == 1
        assert expected in report.rejected[0][1], report.rejected
    _label_still_there(labeled)


def test_symlink_is_not_followed(labeled: Project, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(5))
    os.symlink(secret, folder / "link.png")
    report = labeled.import_images(folder)
    assert report.accepted == [] and "symlink" in report.rejected[0][1]
    _label_still_there(labeled)


def test_non_utf8_and_very_long_names(labeled: Project, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9-latin1.png"
    with open(raw, "wb") as handle:
        handle.write(png_bytes(6))
    (folder / ("x" * 240 + ".png")).write_bytes(png_bytes(7))
    report = labeled.import_images(folder)
    assert len(report.accepted) == 2, report.rejected
    # Every accepted path is text the UI can show; the odd name is stored as a copy by hash.
    assert any("caf\ufffd-latin1.png" in path for path in report.accepted)
    for path in report.accepted:
        path.encode("utf-8")
    task_images = set()
    while (task := labeled.next_task(annotator="bob")) is not None:
        task_images.add(task.image)
        labeled.submit(task.id, label="b", annotator="bob")
    assert all(Path(image).is_file() for image in task_images)
    _label_still_there(labeled)


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ({"../../escape.png": png_bytes(8)}, "unsafe path"),
        ({"/abs/path.png": png_bytes(9)}, "unsafe path"),
        ({"inner.zip": _zip({"a.png": png_bytes(10)})}, "nested zip"),
    ],
    ids=["zip-slip", "absolute-member", "nested-zip"],
)
def test_bad_zip_members(
    labeled: Project, tmp_path: Path, members: dict[str, bytes], expected: str
) -> None:
    report = labeled.import_zip(_zip(members), name="upload.zip")
    assert report.accepted == [] and expected in report.rejected[0][1]
    assert not (tmp_path / "escape.png").exists()
    _label_still_there(labeled)


def test_zip_bomb_is_refused(labeled: Project) -> None:
    bomb = _zip({"zeros.png": b"\0" * (40 * 2**20)})
    with pytest.raises(ImportFailed, match=r"(?i)zip bomb|compress|too large"):
        labeled.import_zip(bomb, name="bomb.zip")
    _label_still_there(labeled)


def test_not_a_zip(labeled: Project) -> None:
    with pytest.raises(ImportFailed):
        labeled.import_zip(b"this is not a zip archive", name="fake.zip")
    _label_still_there(labeled)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("file,class\nx.png,a\n", "no 'path' column"),
        ("path;label\n", None),
    ],
    ids=["missing-path-column", "header-only"],
)
def test_manifest_shapes(
    labeled: Project, tmp_path: Path, content: str, expected: str | None
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    if expected is None:
        assert labeled.import_manifest(manifest).accepted == []
    else:
        with pytest.raises(ImportFailed, match=expected):
            labeled.import_manifest(manifest)
    _label_still_there(labeled)


def test_manifest_extra_columns_and_unknown_labels(labeled: Project, tmp_path: Path) -> None:
    images = write_images(tmp_path / "imgs", 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"PATH ,Label,notes\n{images[0]},b,fine\n{images[1]},zebra,unknown\n")
    report = labeled.import_manifest(manifest)
    assert len(report.accepted) == 1
    assert report.rejected == [(str(images[1]), "label 'zebra' is not a class of this project")]
    _label_still_there(labeled)


def test_manifest_bad_encoding(labeled: Project, tmp_path: Path) -> None:
    manifest = tmp_path / "latin1.csv"
    manifest.write_bytes("path,label\ncaf\u00e9.png,a\n".encode("latin-1"))
    with pytest.raises(ImportFailed, match=r"(?i)utf-8|encoding"):
        labeled.import_manifest(manifest)
    _label_still_there(labeled)


def test_class_names_with_html_quotes_and_emoji(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    classes = ['<script>alert("x")</script>', 'it\'s "quoted"', "cat 🐱"]
    project = sqlite_workspace.create_project("odd", classes=classes)
    project.import_images(write_images(tmp_path / "i", 2)[0].parent)
    task = project.next_task(annotator="<b>ana</b>")
    assert task is not None
    project.submit(task.id, label=classes[0], annotator="<b>ana</b>")
    assert project.classes == classes
    assert project.labels()["label"].tolist() == [classes[0]]


def test_duplicate_class_names(sqlite_workspace: Workspace) -> None:
    with pytest.raises(InvalidClasses, match="duplicate class names: a"):
        sqlite_workspace.create_project("dup", classes=["a", "b", "a"])


def test_empty_project(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    project = sqlite_workspace.create_project("empty", classes=["a", "b"])
    assert project.next_task(annotator="ana") is None
    status = project.status()
    assert status.n_samples == 0 and not status.pool_exhausted
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert project.import_images(empty).accepted == []
