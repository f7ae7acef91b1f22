"""The `activelearn` command: each subcommand on a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from activelearn import Workspace
from activelearn.cli import main
from tests.conftest import write_images


def _db(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--data-dir", str(tmp_path / "data")]


def test_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "activelearn", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("demo", "import", "status", "export", "backup"):
        assert command in result.stdout


def test_import_status_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_images(tmp_path / "src" / "cat", 2)
    write_images(tmp_path / "src" / "dog", 3, start=10)
    (tmp_path / "src" / "dog" / "broken.png").write_bytes(b"nope")
    code = main(
        [
            "import",
            str(tmp_path / "src"),
            "--project",
            "pets",
            "--classes",
            "cat,dog",
            *_db(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "5 imported" in out and "broken.png: not an image" in out

    assert main(["status", "--json", *_db(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["project"] == "pets" and rows[0]["labeled"] == 5
    # The import queued the project's representation job; no worker has run it yet.
    assert rows[0]["representation"] == "none yet, job #1 queued (queued 0%)"

    out_file = tmp_path / "labels.jsonl"
    assert (
        main(
            [
                "export",
                "--project",
                "pets",
                "--format",
                "jsonl",
                "--out",
                str(out_file),
                *_db(tmp_path),
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert sorted(r["label"] for r in records) == ["cat", "cat", "dog", "dog", "dog"]

    assert main(["export", "--project", "pets", "--format", "csv", *_db(tmp_path)]) == 0
    csv_lines = capsys.readouterr().out.strip().splitlines()
    assert (
        csv_lines[0].startswith("sample_id,path,label,annotator,labeled_at") and len(csv_lines) == 6
    )


def test_unknown_project_is_a_plain_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Workspace(f"sqlite:///{tmp_path / 'cli.db'}", data_dir=tmp_path / "data").close()
    assert main(["export", "--project", "nope", *_db(tmp_path)]) == 1
    assert "error: no project named 'nope'" in capsys.readouterr().err


def test_backup_restores_every_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with Workspace(url, data_dir=tmp_path / "data") as ws:
        project = ws.create_project("p", classes=["a", "b"])
        project.import_images(write_images(tmp_path / "imgs", 6)[0].parent)
        for index in range(4):
            task = project.next_task(annotator="ana")
            assert task is not None
            project.submit(task.id, label="ab"[index % 2], annotator="ana")
        expected = project.labels()[["sample_id", "label"]].values.tolist()
    backup = tmp_path / "backup.db"
    assert main(["backup", str(backup), *_db(tmp_path)]) == 0
    with Workspace(f"sqlite:///{backup}", data_dir=tmp_path / "data") as restored:
        assert restored.project("p").labels()[["sample_id", "label"]].values.tolist() == expected


def test_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", *_db(tmp_path)]) == 0
    assert "4000 pool samples, 1000 test samples" in capsys.readouterr().out


def test_export_predictions_checkpoint_and_image_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd
    from safetensors.torch import load_file

    from tests.services.test_rounds import CLASSES, make_project, run_one

    with Workspace(f"sqlite:///{tmp_path / 'cli.db'}", data_dir=tmp_path / "data") as ws:
        project = make_project(ws, tmp_path / "images", n_labeled=2, n_open=3, n_test=1)
        # Before any round there is nothing to predict with: a plain error, exit 1.
        assert main(["export", "--project", "tiny", "--format", "predictions-csv", *_db(tmp_path)])
        assert "no finished round yet" in capsys.readouterr().err
        project.request_round()
        assert run_one(ws, project) == "succeeded"

    parquet = tmp_path / "pool.parquet"
    args = ["export", "--project", "tiny", *_db(tmp_path)]
    assert main([*args, "--format", "predictions-parquet", "--out", str(parquet)]) == 0
    frame = pd.read_parquet(parquet)
    # Every pool sample (6 labeled + 9 open) with its scores and one probability per class.
    assert len(frame) == 15 and frame["rank"].notna().sum() == 9
    assert {"mutual_information", "predictive_entropy", "p_left", "p_top"} <= set(frame.columns)
    sums = frame[[f"p_{c}" for c in CLASSES]].sum(axis=1)
    assert ((sums - 1).abs() < 1e-3).all()

    assert main([*args, "--format", "predictions-csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 16  # header + 15 rows

    assert main([*args, "--format", "checkpoint"]) == 1  # a folder format needs --out
    model = tmp_path / "model"
    assert main([*args, "--format", "checkpoint", "--out", str(model)]) == 0
    assert json.loads((model / "classes.json").read_text())["classes"] == CLASSES
    assert load_file(model / "model.safetensors")  # safetensors, no pickle

    folder = tmp_path / "imagefolder"
    assert main([*args, "--format", "imagefolder", "--out", str(folder)]) == 0
    # split/class/file: 6 labeled pool images and the 3 gold test images.
    assert sorted(p.name for p in (folder / "pool").iterdir()) == sorted(CLASSES)
    assert sum(1 for _ in (folder / "pool").rglob("*.png")) == 6
    assert sum(1 for _ in (folder / "test").rglob("*.png")) == 3
