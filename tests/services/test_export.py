"""Exports round-trip: labels (CSV, JSONL, ImageFolder), predictions (CSV, Parquet), checkpoint."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from sqlalchemy import select

from activelearn import Workspace
from activelearn.core.ensemble import Ensemble
from activelearn.errors import NothingToExport
from activelearn.services import export
from db.engine import read_session
from db.models import Sample, SampleScore
from tests.services.test_dashboard import CLASSES, DashboardFixture, build_dashboard_project


@pytest.fixture
def fixture(sqlite_workspace: Workspace, tmp_path: Path) -> DashboardFixture:
    return build_dashboard_project(sqlite_workspace, tmp_path)


def test_labels_csv_and_jsonl_round_trip(fixture: DashboardFixture) -> None:
    expected = export.labels_frame(fixture.project)
    assert len(expected) == 8  # one row per labeled sample (2 of them relabeled by ben)
    assert set(expected["label"]) == set(CLASSES)
    from_csv = export.read_labels_csv(export.labels_csv_bytes(fixture.project))
    pd.testing.assert_frame_equal(from_csv, expected, check_dtype=False)
    from_jsonl = export.read_labels_jsonl(export.labels_jsonl_bytes(fixture.project))
    pd.testing.assert_frame_equal(from_jsonl, expected, check_dtype=False)
    # the public API agrees on who labeled what
    public = fixture.project.labels()
    assert public["sample_id"].tolist() == expected["sample_id"].tolist()
    assert public["label"].tolist() == expected["label"].tolist()


def test_label_files_written_to_a_folder(fixture: DashboardFixture, tmp_path: Path) -> None:
    paths = export.write_labels(fixture.project, tmp_path / "out")
    assert [p.name for p in paths] == ["labels.csv", "labels.jsonl"]
    back = export.read_labels_csv(paths[0])
    assert back["label"].tolist() == export.labels_frame(fixture.project)["label"].tolist()


def test_image_folder_copy_round_trips(fixture: DashboardFixture, tmp_path: Path) -> None:
    target = tmp_path / "imagefolder"
    report = export.write_image_folder(fixture.project, target)
    assert report.written == len(fixture.labeled) and report.missing == ()
    folders = report.class_folders
    # the <script> class becomes a harmless folder name
    assert folders["cat"] == "cat" and "/" not in folders[CLASSES[2]]
    assert "<" not in folders[CLASSES[2]]
    with read_session(fixture.project.engine) as session:
        rows = session.execute(
            select(Sample.id, Sample.path, Sample.label).where(Sample.status == "labeled")
        ).all()
    for sample_id, path, label in rows:
        copied = target / "pool" / folders[label] / f"{sample_id}.png"
        assert copied.read_bytes() == Path(path).read_bytes()
    manifest = json.loads((target / "classes.json").read_text())
    assert manifest["class_folders"] == folders
    # the ZIP holds the same tree
    archive = zipfile.ZipFile(io.BytesIO(export.image_folder_zip_bytes(fixture.project)))
    names = set(archive.namelist())
    expected = {
        str(p.relative_to(target)).replace("\\", "/") for p in target.rglob("*") if p.is_file()
    }
    assert names == expected
    for sample_id, path, label in rows:
        member = f"pool/{folders[label]}/{sample_id}.png"
        assert archive.read(member) == Path(path).read_bytes()


def test_class_folder_names_are_safe_and_unique() -> None:
    names = export.class_folder_names(["a/b", "a_b", "..", "", "A_B", "ok"])
    assert names["a/b"] == "a_b"
    assert names["a_b"] == "a_b_1"
    assert names[".."] == "class_2"
    assert names[""] == "class_3"
    assert names["A_B"] == "A_B_4"  # case-insensitive file systems
    assert names["ok"] == "ok"
    assert len(set(names.values())) == 6


def test_predictions_round_trip_csv_and_parquet(fixture: DashboardFixture) -> None:
    frame = export.predictions_frame(fixture.project)
    latest = fixture.round_ids[1]
    with read_session(fixture.project.engine) as session:
        scores = {
            row.sample_id: row
            for row in session.scalars(select(SampleScore).where(SampleScore.round_id == latest))
        }
    assert sorted(frame["sample_id"]) == sorted(scores)
    assert (frame["round_id"] == latest).all()
    for column in ("mutual_information", "predictive_entropy", "variance", "confidence"):
        expected = [getattr(scores[s], column) for s in frame["sample_id"]]
        assert frame[column].tolist() == pytest.approx(expected)
    for index, name in enumerate(CLASSES):
        expected = [scores[s].mean_probs[index] for s in frame["sample_id"]]
        assert frame[f"p_{name}"].tolist() == pytest.approx(expected)
    assert frame["rank"].isna().sum() == len(fixture.labeled)  # labeled at the time: no rank
    planted = frame[frame["sample_id"] == fixture.planted_error].iloc[0]
    assert planted["predicted_class"] == "dog" and json.loads(planted["member_predictions"]) == [
        1,
        1,
    ]
    from_parquet = pd.read_parquet(io.BytesIO(export.predictions_parquet_bytes(fixture.project)))
    pd.testing.assert_frame_equal(from_parquet, frame, check_dtype=False)
    from_csv = export.read_predictions_csv(export.predictions_csv_bytes(fixture.project))
    pd.testing.assert_frame_equal(from_csv, frame, check_dtype=False)


def test_checkpoint_export_round_trips_tensors(fixture: DashboardFixture, tmp_path: Path) -> None:
    original = Ensemble.load(fixture.checkpoint, device="cpu")
    folder = export.write_checkpoint(fixture.project, tmp_path / "ckpt")
    assert sorted(p.name for p in folder.iterdir()) == [
        "classes.json",
        "config.json",
        "model.safetensors",
    ]
    loaded = Ensemble.load(folder, device="cpu")
    for name, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert json.loads((folder / "classes.json").read_text())["classes"] == CLASSES
    # the ZIP holds the same files, byte for byte
    archive = zipfile.ZipFile(io.BytesIO(export.checkpoint_zip_bytes(fixture.project)))
    for name in ("model.safetensors", "config.json"):
        assert archive.read(name) == (fixture.checkpoint / name).read_bytes()


def test_exports_before_any_round_say_so(sqlite_workspace: Workspace) -> None:
    project = sqlite_workspace.create_project("empty", ["a", "b"])
    assert export.labels_frame(project).empty
    assert export.read_labels_jsonl(export.labels_jsonl_bytes(project)).empty
    with pytest.raises(NothingToExport, match="no finished round"):
        export.predictions_frame(project)
    with pytest.raises(NothingToExport, match="no checkpoint"):
        export.checkpoint_zip_bytes(project)


def test_labels_named_like_missing_values_survive_the_csv(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    from tests.conftest import write_images

    project = sqlite_workspace.create_project(
        "na", ["NA", "null", "0"], settings={"audit_share": 0.0, "retrain_every": 0}
    )
    project.import_images(write_images(tmp_path / "na-images", 3)[0].parent)
    for label in ("NA", "null", "0"):
        task = project.next_task("NA")
        assert task is not None
        project.submit(task.id, label=label, annotator="NA")
    back = export.read_labels_csv(export.labels_csv_bytes(project))
    assert back["label"].tolist() == ["NA", "null", "0"]
    assert back["annotator"].tolist() == ["NA"] * 3
