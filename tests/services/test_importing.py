"""Import through the public API: every bad kind is reported with a reason, nothing good lost."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activelearn import ImportFailed, Workspace
from activelearn.ingest.cache import TensorCache
from db import queries
from db.engine import read_session
from tests.conftest import png_bytes, write_images


def _huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buffer, format="JPEG"
    )
    return buffer.getvalue()


def test_bad_files_are_reported_and_good_ones_kept(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    good = write_images(folder, 3)
    (folder / "corrupt.png").write_bytes(png_bytes(99)[:40] + b"garbage" * 20)
    (folder / "truncated.jpg").write_bytes(_jpeg_bytes()[:300])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("this is not an image")
    (folder / "bomb.png").write_bytes(_huge_png_header(10_000, 10_000))
    (folder / "copy.png").write_bytes(good[0].read_bytes())
    p = sqlite_workspace.create_project("p", classes=["a", "b"])
    report = p.import_images(folder)
    # copy.png and img00000.png hold the same bytes: whichever comes first is kept.
    kept = sorted(Path(x).name for x in report.accepted + report.duplicates)
    assert kept == sorted([x.name for x in good] + ["copy.png"])
    assert len(report.accepted) == 3 and len(report.duplicates) == 1
    reasons = {Path(path).name: reason for path, reason in report.rejected}
    assert set(reasons) == {"corrupt.png", "truncated.jpg", "empty.png", "notes.png", "bomb.png"}
    assert "empty" in reasons["empty.png"]
    assert "not an image" in reasons["notes.png"]
    assert "too large" in reasons["bomb.png"] and "100,000,000" in reasons["bomb.png"]
    assert "5 rejected" in report.summary()
    # Importing the same folder again adds nothing.
    again = p.import_images(folder)
    assert again.accepted == [] and len(again.duplicates) == 4
    assert p.status().n_samples == 3


def test_class_folders_become_labels(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    write_images(tmp_path / "src" / "a", 2, start=0)
    write_images(tmp_path / "src" / "b", 3, start=10)
    write_images(tmp_path / "src" / "zebra", 1, start=20)
    p = sqlite_workspace.create_project("p", classes=["a", "b"])
    report = p.import_images(tmp_path / "src")
    assert len(report.accepted) == 5
    assert [reason for _, reason in report.rejected] == [
        "label 'zebra' is not a class of this project"
    ]
    labels = p.labels()
    assert sorted(labels["label"]) == ["a", "a", "b", "b", "b"]
    assert set(labels["annotator"]) == {"import"}


def test_manifest_and_missing_path_column(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    images = write_images(tmp_path / "imgs", 4)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,split\n"
        f"{images[0]},a,pool\n"
        f"imgs/{images[1].name},b,test\n"
        f"{images[2]},,\n"
        f"{images[3]},unicorn,pool\n"
    )
    p = sqlite_workspace.create_project("p", classes=["a", "b"])
    report = p.import_manifest(manifest)
    assert len(report.accepted) == 3
    assert report.rejected[0][1] == "label 'unicorn' is not a class of this project"
    status = p.status()
    assert (status.n_test, status.n_labeled, status.n_unlabeled) == (1, 1, 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\nx.png,a\n")
    with pytest.raises(ImportFailed, match="no 'path' column"):
        p.import_manifest(bad)


def test_zip_with_escaping_member(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("imgs/one.png", png_bytes(1))
        archive.writestr("imgs/two.png", png_bytes(2))
        archive.writestr("../evil.png", png_bytes(3))
    p = sqlite_workspace.create_project("p", classes=["a", "b"])
    report = p.import_zip(buffer.getvalue(), name="up.zip")
    assert len(report.accepted) == 2
    assert [reason for _, reason in report.rejected] == ["unsafe path in zip (escapes the archive)"]
    assert not (tmp_path / "evil.png").exists()
    # Zip members are stored under the data folder by content hash; tasks point at real files.
    task = p.next_task(annotator="ana")
    assert task is not None and Path(task.image).is_file()
    assert str(sqlite_workspace.data_dir.resolve()) in task.image


def test_cache_holds_decoded_tensors(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", 5)
    p = sqlite_workspace.create_project("p", classes=["a", "b"], settings={"image_size": 12})
    p.import_images(tmp_path / "imgs")
    with read_session(sqlite_workspace.engine) as session:
        refs = [(shard, index) for _, shard, index in queries.unlabeled_pool(session, p.id)]
    pixels = TensorCache(p.cache_dir, channels=1, image_size=12).load(refs)
    assert pixels.shape == (5, 1, 12, 12) and pixels.dtype == np.uint8


def test_missing_folder_is_a_plain_error(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    p = sqlite_workspace.create_project("p", classes=["a", "b"])
    with pytest.raises(ImportFailed, match="not found"):
        p.import_images(tmp_path / "nowhere")


def test_demo_project(sqlite_workspace: Workspace) -> None:
    p = sqlite_workspace.ensure_demo()
    status = p.status()
    assert (status.n_pool, status.n_test, status.n_labeled) == (4000, 1000, 0)
    assert p.settings.audit_share == 0.0
    assert sqlite_workspace.ensure_demo().id == p.id  # idempotent
    assert p.status().n_samples == 5000
