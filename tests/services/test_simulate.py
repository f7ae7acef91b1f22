"""`activelearn simulate` on a tiny manifest: the documented CSV columns, rounds, summary."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from activelearn import simulate as simulate_module
from activelearn.cli import main
from activelearn.core.representation import build_features
from activelearn.core.strategies import STRATEGIES
from activelearn.services import pipeline
from activelearn.services.features import SEED, feature_config
from activelearn.services.settings import ProjectSettings
from activelearn.simulate import (
    CSV_COLUMNS,
    LabeledImages,
    Representation,
    RoundRow,
    SimulationConfig,
    labels_to_reach,
    read_manifest,
    simulate,
)
from tests.services.test_rounds import write_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def manifests(folder: Path) -> tuple[Path, Path]:
    pool = [(cls, seed, label, None) for cls, label in enumerate("abc") for seed in range(10)]
    test = [(cls, 500 + seed, label, None) for cls, label in enumerate("abc") for seed in range(5)]
    return write_manifest(folder, pool, name="pool"), write_manifest(folder, test, name="test")


def test_simulate_writes_one_row_per_round_with_the_documented_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    pool, test = manifests(tmp_path / "images")
    out = tmp_path / "results.csv"
    code = main(
        [
            "simulate", "--manifest", str(pool), "--test", str(test),
            "--strategy", "bald", "--strategy", "random", "--strategy", "batchbald",
            "--init", "3", "--batch", "3", "--budget", "9", "--members", "2", "--epochs", "1",
            "--repeats", "2", "--seed", "0", "--image-size", "12", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    with out.open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 3 * 2 * 3  # strategies x repeats x rounds (3, 6, 9 labels)
    for strategy in ("bald", "random", "batchbald"):
        mine = [r for r in rows if r["strategy"] == strategy and r["repeat"] == "0"]
        assert [int(r["round"]) for r in mine] == [0, 1, 2]
        assert [int(r["n_labels"]) for r in mine] == [3, 6, 9]
        for row in mine:
            assert 0.0 <= float(row["test_accuracy"]) <= 1.0
            assert float(row["test_nll"]) >= 0 and 0.0 <= float(row["test_ece"]) <= 1.0
            assert float(row["seconds"]) > 0
    printed = capsys.readouterr().out
    assert "labels to 90%" in printed and "labels to 95%" in printed
    assert all(name in printed for name in ("bald", "random", "batchbald"))


def test_simulate_rejects_an_unknown_strategy_and_accepts_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    pool, test = manifests(tmp_path / "images")
    code = main(["simulate", "--manifest", str(pool), "--test", str(test), "--strategy", "oracle"])
    assert code == 1  # one error line, exit 1, like every CLI failure
    assert capsys.readouterr().err.startswith("error: unknown strategy oracle")
    assert {"bald", "random", "entropy", "batchbald", "power_bald"} <= set(STRATEGIES)


def test_labels_to_reach_takes_the_median_over_repeats():
    def row(repeat: int, n: int, accuracy: float) -> RoundRow:
        return RoundRow("bald", repeat, n // 10, n, accuracy, 0.1, 0.01, 1.0)

    rows = [row(0, 20, 0.8), row(0, 30, 0.96), row(1, 20, 0.91), row(1, 30, 0.93)]
    rows += [row(2, 20, 0.5), row(2, 30, 0.6)]
    assert labels_to_reach(rows, 0.90) == {"bald": 30.0}  # 30, 20, never -> median 30
    assert math.isinf(labels_to_reach(rows, 0.95)["bald"])  # 30, never, never


def test_simulate_for_a_project_feeds_its_dashboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from activelearn import Workspace
    from activelearn.services import dashboard

    pool, test = manifests(tmp_path / "images")
    db = ["--db", f"sqlite:///{tmp_path / 'sim.db'}", "--data-dir", str(tmp_path / "data")]
    args = ["simulate", "--manifest", str(pool), "--test", str(test), "--strategy", "random"]
    args += ["--init", "3", "--batch", "3", "--budget", "6", "--members", "2", "--epochs", "1"]
    args += ["--repeats", "1", "--image-size", "12", *db]
    assert main([*args, "--project", "letters"]) == 1  # no database yet: nothing is created
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "sim.db").exists()
    with Workspace(db[1], data_dir=tmp_path / "data") as ws:
        ws.create_project("letters", classes=list("abc"))
    assert main([*args, "--project", "nope"]) == 1  # checked before any training
    assert "no project named 'nope'" in capsys.readouterr().err
    assert main([*args, "--project", "letters"]) == 0
    assert "results kept for project 'letters'" in capsys.readouterr().out
    with Workspace(db[1], data_dir=tmp_path / "data") as ws:
        curve, files = dashboard.simulation_curve(ws.project("letters"))
    assert len(files) == 1 and curve is not None
    assert sorted(curve["n_labels"].tolist()) == [3, 6]


def test_simulate_with_the_embedding_learner_from_zero_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # --init 0: the strategy picks the first batch with no model (auto/typiclust cluster the
    # representation, bald draws at random); the representation (here --backbone ssl, the
    # slow one) is learned once for the run.
    pool, test = manifests(tmp_path / "images")
    out = tmp_path / "results.csv"
    code = main(
        [
            "simulate", "--manifest", str(pool), "--test", str(test),
            "--learner", "embedding", "--strategy", "auto", "--strategy", "typiclust",
            "--strategy", "bald", "--init", "0", "--batch", "3", "--budget", "9",
            "--members", "2", "--repeats", "1", "--backbone", "ssl", "--ssl-epochs", "1",
            "--image-size", "12",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    for strategy in ("auto", "typiclust", "bald"):
        mine = [r for r in rows if r["strategy"] == strategy]
        assert [int(r["n_labels"]) for r in mine] == [3, 6, 9]  # the first model has 3 labels
        assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in mine)
    printed = capsys.readouterr().out
    assert printed.count("representation: epoch 1/1") == 1  # once for 3 strategies
    # Three well-separated classes and 3 labels each picked from the clusters: auto covers them.
    assert float(next(r for r in rows if r["strategy"] == "auto")["test_accuracy"]) > 0.5


def test_the_cold_start_pick_of_typiclust_covers_every_cluster():
    # Features that are the classes' axes: TypiClust's first 3 picks are one per class.
    labels = np.repeat(np.arange(3), 10)
    features = torch.eye(3)[labels] + 0.01 * torch.randn(30, 3, generator=torch.Generator())
    pixels = np.zeros((30, 1, 8, 8), dtype=np.uint8)
    pool = LabeledImages(pixels, labels, list("abc"))
    config = SimulationConfig(
        strategies=("typiclust",), init=0, batch=3, budget=3, members=2, repeats=1,
        learner="embedding",
    )  # fmt: skip
    rows = simulate(pool, pool, config, representation=Representation(pool=features, test=features))
    assert len(rows) == 1 and rows[0].n_labels == 3
    assert rows[0].test_accuracy == 1.0  # one label per cluster labels the whole pool right


def test_simulate_uses_the_app_features_fitted_on_the_pool_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # The default backbone is the app's: the features every round sees are those its
    # representation stage computes for the same pool (build_features with a new project's
    # feature config and seed), the test rows embedded with the pool's fit. Every round trains
    # on pool rows only, and changing the test images changes no pool feature.
    pool_csv, test_csv = manifests(tmp_path / "images")
    pool = read_manifest(pool_csv, image_size=12, channels=1)
    test = read_manifest(test_csv, image_size=12, channels=1, classes=pool.classes)
    seen: list[dict] = []

    def spy(**kwargs):  # the real round, its inputs recorded
        seen.append(kwargs)
        return pipeline.train_and_score(**kwargs)

    monkeypatch.setattr(simulate_module, "train_and_score", spy)
    config = SimulationConfig(
        strategies=("auto", "random"), init=0, batch=3, budget=6, members=2, repeats=1,
        learner="embedding",
    )  # fmt: skip
    assert config.backbone == ProjectSettings().backbone == "hog"
    simulate(pool, test, config)
    app = ProjectSettings(image_size=12, channels=1)
    fitted, expected_pool = build_features(pool.pixels, feature_config(app), seed=SEED)
    expected_test = fitted.embed(test.pixels)
    assert len(seen) == 4  # 2 strategies x 2 rounds, one representation for all
    for call in seen:
        torch.testing.assert_close(call["pool_features"], expected_pool, atol=1e-5, rtol=0)
        torch.testing.assert_close(call["eval_features"], expected_test, atol=1e-5, rtol=0)
        index = call["train_pool_index"]
        np.testing.assert_array_equal(call["train_pixels"], pool.pixels[index])
        np.testing.assert_array_equal(call["train_labels"], pool.labels[index])
        assert call["eval_pixels"] is test.pixels  # the test split is only evaluated on
    changed = LabeledImages(255 - test.pixels, test.labels, test.classes)
    seen.clear()
    simulate(pool, changed, replace(config, strategies=("random",), budget=3))
    torch.testing.assert_close(seen[0]["pool_features"], expected_pool, atol=1e-5, rtol=0)
    assert not torch.allclose(seen[0]["eval_features"], expected_test, atol=1e-3)


def test_simulate_rejects_a_backbone_the_app_would_reject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    pool, test = manifests(tmp_path / "images")
    args = ["simulate", "--manifest", str(pool), "--test", str(test), "--budget", "20"]
    assert main([*args, "--backbone", "torchvision:resnet18"]) == 1  # no local weights
    assert "backbone_weights" in capsys.readouterr().err
    assert main([*args, "--backbone", "sift"]) == 1
    assert "backbone must be" in capsys.readouterr().err
