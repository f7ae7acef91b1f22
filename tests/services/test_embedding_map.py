"""The dashboard's embedding map: hand-checked projection and 1-NN quality, then a real project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activelearn import Workspace
from activelearn.services import dashboard as data
from activelearn.services.dashboard.embedding_map import knn_accuracy, project_2d
from tests.services.test_representation import run_queued
from tests.services.test_rounds import make_project, run_one

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_project_2d_finds_the_spread_axes() -> None:
    # Points on a line along (1, 1, 0) with a little spread along (0, 0, 1).
    t = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    z = 0.1 * np.array([1.0, -2.0, 0.0, 2.0, -1.0])  # orthogonal to t, mean 0
    vectors = np.stack([t, t, z], axis=1)
    coords, explained = project_2d(vectors)
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(t) * np.sqrt(2), atol=1e-9)
    total = 2 * 10 + 0.01 * 10  # sums of squares: the line (2 * sum t^2) and the spread
    assert explained[0] == pytest.approx(20 / total) and explained[1] == pytest.approx(0.1 / total)
    np.testing.assert_allclose(np.abs(coords[:, 1]), np.abs(z), atol=1e-9)


def test_knn_accuracy_by_hand() -> None:
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    # nearest neighbours: 0<->1 and 2<->3; one of the pairs disagrees
    assert knn_accuracy(vectors, ["a", "a", "b", "c"]) == pytest.approx(0.5)
    assert knn_accuracy(vectors[:1], ["a"]) is None


def test_a_project_map_after_its_representation_and_a_round(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings={"ssl_epochs": 1})
    assert data.embedding_map(project) is None  # before the representation stage
    assert run_queued(ws) == "succeeded"
    before = data.embedding_map(project)
    assert before is not None and before.n_pool == 42 and before.n_labeled == 12
    assert before.points["mutual_information"].isna().all()  # no round yet
    assert before.knn_accuracy == 1.0  # three clean classes (the pixel part tells left from right)
    project.request_round(requested_by="test")
    assert run_one(ws, project) == "succeeded"
    after = data.embedding_map(project, project.last_round().id)
    assert after is not None
    open_rows = after.points[after.points["label"].isna()]
    assert open_rows["predicted"].notna().all() and open_rows["mutual_information"].notna().all()
    assert set(after.points["label"].dropna()) == {"left", "right", "top"}


def test_learning_curves_compare_the_learners_a_project_used(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    from activelearn.ui.learner_chart import learner_comparison_chart, learners_used

    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings={"ssl_epochs": 1})  # learner cnn
    assert run_queued(ws) == "succeeded"
    project.request_round(requested_by="test")
    assert run_one(ws, project) == "succeeded"
    project.update_settings(learner="embedding")
    project.request_round(requested_by="test")
    assert run_one(ws, project) == "succeeded"
    curves = data.learning_curves(project).curves
    ensembles = curves[curves["member"] == -1]
    assert ensembles["learner"].tolist() == ["cnn", "embedding"]
    assert learners_used(curves) == ["cnn", "embedding"]
    chart = learner_comparison_chart(curves, metric="accuracy")
    assert [trace.name for trace in chart.figure.data] == ["cnn", "embedding"]
    assert "Accuracy by learner" in chart.figure.layout.title.text.replace("<br>", " ")
