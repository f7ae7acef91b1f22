"""Before the first model the queue serves TypiClust's picks; a round's picks say why too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activelearn import Workspace
from activelearn.services.cold_start import typical_picks
from activelearn.ui.components import why_chosen
from tests.services.test_representation import run_queued
from tests.services.test_rounds import make_project, run_one

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_typical_picks_cover_the_clusters_first() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    sizes = (40, 25, 10)
    points = np.concatenate(
        [c + rng.normal(size=(n, 2)) for c, n in zip(centres, sizes, strict=True)]
    )
    cluster = np.repeat([0, 1, 2], sizes)
    picks = typical_picks(points, np.zeros(len(points), bool), count=3, n_classes=3)
    assert sorted(cluster[[p for p, _ in picks]]) == [0, 1, 2]  # one per cluster
    assert picks[0][1].startswith("most typical of an unlabeled cluster of")
    # a labeled cluster goes last: label one sample of cluster 0
    labeled = np.zeros(len(points), bool)
    labeled[0] = True
    first_two = typical_picks(points, labeled, count=2, n_classes=3)
    assert 0 not in {cluster[p] for p, _ in first_two}


def test_the_queue_serves_typical_picks_before_the_first_round(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace
    project = make_project(
        ws,
        tmp_path / "images",
        n_labeled=0,
        settings={"ssl_epochs": 1, "audit_share": 0.0, "strategy": "auto"},
    )
    assert project.next_task("early").strategy == "cold_start"  # no embeddings yet: random
    project.release(project.next_task("early").id, annotator="early")
    assert run_queued(ws) == "succeeded"
    served = []
    for _ in range(3):
        task = project.next_task("ana")
        assert task.strategy == "cold_start_typical" and task.round_id is None
        assert task.reason is not None and task.reason.startswith("most typical of")
        assert "TypiClust" in why_chosen(task)
        served.append(Path(task.image).stem.split("-")[1])  # '<name>-<class>-<seed>'
        project.submit(task.id, ["left", "right", "top"][int(served[-1])], annotator="ana")
    assert sorted(served) == ["0", "1", "2"]  # the first three labels cover the three classes
    project.update_settings(strategy="random")  # a random baseline keeps the random order
    assert project.next_task("bo").strategy == "cold_start"


def test_a_round_s_picks_carry_their_reason(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    project = make_project(
        ws,
        tmp_path / "images",
        settings={
            "ssl_epochs": 1,
            "learner": "embedding",
            "strategy": "typiclust",
            "acquisition_batch": 5,
        },
    )
    assert run_queued(ws) == "succeeded"
    project.request_round(requested_by="test")
    assert run_one(ws, project) == "succeeded"
    task = project.next_task("ana")
    assert task.round_id == project.last_round().id and task.rank == 1
    assert task.reason is not None and task.reason.startswith("most typical of")
    assert task.reason in why_chosen(task)
