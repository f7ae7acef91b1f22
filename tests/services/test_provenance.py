"""Issue 16, item 9: every sample keeps its original file name, and a duplicate image whose label
disagrees is reported as a conflict instead of vanishing among the duplicates."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from activelearn import Workspace
from activelearn.services import export
from activelearn.services.importing import original_name
from tests.conftest import png_bytes


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_original_name_is_the_path_inside_the_source() -> None:
    assert original_name("pets.zip!bird/bird_0.jpg", None) == "bird/bird_0.jpg"
    assert original_name("/data/pets/bird/b 0.jpg", "/data/pets") == "bird/b 0.jpg"
    assert original_name("/elsewhere/x.png", "/data/pets") == "/elsewhere/x.png"
    assert original_name("digit_7.png", None) == "digit_7.png"


def test_zip_names_reach_tasks_labels_and_exports(workspace: Workspace) -> None:
    p = workspace.create_project("p", ["bird", "cat"])
    report = p.import_zip(
        _zip({"bird/bird_0.png": png_bytes(1), "cat/c.png": png_bytes(2), "x.png": png_bytes(3)}),
        name="pets.zip",
    )
    assert len(report.accepted) == 3, report.summary()
    labels = p.labels().set_index("original_name")["label"].to_dict()
    assert labels == {"bird/bird_0.png": "bird", "cat/c.png": "cat"}
    # The stored file is kept by hash; the name a person knows is kept beside it.
    stored = p.labels().set_index("original_name")["path"]["bird/bird_0.png"]
    assert "bird_0" not in stored
    csv = export.read_labels_csv(export.labels_csv_bytes(p))
    assert sorted(csv["original_name"]) == ["bird/bird_0.png", "cat/c.png"]
    jsonl = export.read_labels_jsonl(export.labels_jsonl_bytes(p))
    assert sorted(jsonl["original_name"]) == ["bird/bird_0.png", "cat/c.png"]
    # The unlabeled one is served with its name, and a label keeps it in the recent list.
    task = p.next_task("ana")
    assert task is not None and task.original_name == "x.png" and task.shown_name == "x.png"
    p.submit(task.id, label="cat", annotator="ana")
    [record] = p.recent_labels("ana")
    assert record.original_name == "x.png"
    assert p.original_names([task.sample_id]) == {task.sample_id: "x.png"}


def test_folder_and_manifest_names_are_relative(workspace: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "owl").mkdir(parents=True)
    (folder / "owl" / "o1.png").write_bytes(png_bytes(10))
    (folder / "fox").mkdir()
    (folder / "fox" / "f1.png").write_bytes(png_bytes(11))
    p = workspace.create_project("p", ["owl", "fox"])
    p.import_images(folder)
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "m.png").write_bytes(png_bytes(12))
    (tmp_path / "list.csv").write_text("path,label\nmore/m.png,fox\n")
    p.import_manifest(tmp_path / "list.csv")
    assert sorted(p.labels()["original_name"]) == ["fox/f1.png", "more/m.png", "owl/o1.png"]


def test_duplicate_with_a_different_label_is_a_conflict(
    workspace: Workspace, tmp_path: Path
) -> None:
    p = workspace.create_project("p", ["cat", "dog"])
    same = png_bytes(5)
    report = p.import_zip(
        _zip({"cat/a.png": same, "dog/a_copy.png": same, "cat/b.png": png_bytes(6)}),
        name="one.zip",
    )
    assert len(report.accepted) == 2
    assert report.duplicates == []
    [(path, reason)] = report.conflicts
    assert path == "one.zip!dog/a_copy.png"
    assert "cat/a.png" in reason and "'cat'" in reason and "'dog'" in reason
    assert "1 label conflict (not imported)" in report.summary()
    # Against images already in the project: a manifest row labeling one differently.
    (tmp_path / "a.png").write_bytes(same)
    (tmp_path / "b.png").write_bytes(png_bytes(6))
    (tmp_path / "m.csv").write_text("path,label\na.png,dog\nb.png,cat\n")
    again = p.import_manifest(tmp_path / "m.csv")
    assert [Path(path).name for path, _ in again.conflicts] == ["a.png"]
    assert "labeled 'cat' there but 'dog' here" in again.conflicts[0][1]
    # The same label is a plain duplicate.
    assert [Path(path).name for path in again.duplicates] == ["b.png"]
    assert p.labels().set_index("original_name")["label"].to_dict() == {
        "cat/a.png": "cat",
        "cat/b.png": "cat",
    }


def test_a_label_for_an_unlabeled_image_is_reported(workspace: Workspace, tmp_path: Path) -> None:
    p = workspace.create_project("p", ["cat", "dog"])
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "x.png").write_bytes(png_bytes(7))
    p.import_images(tmp_path / "pool")
    (tmp_path / "m.csv").write_text("path,label\npool/x.png,dog\n")
    report = p.import_manifest(tmp_path / "m.csv")
    [(_, reason)] = report.conflicts
    assert "unlabeled there" in reason and "'dog'" in reason
