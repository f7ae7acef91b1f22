"""Degenerate project sizes: an empty project and a pool smaller than one batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from activelearn import Workspace
from activelearn.errors import NotEnoughLabels
from tests.services.test_rounds import CLASSES, make_project, run_one, write_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_round_on_an_empty_project_is_refused_with_a_reason(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    project = ws.create_project("empty", classes=["a", "b"], settings={"retrain_every": 0})
    with pytest.raises(NotEnoughLabels, match="no labeled pool images"):
        project.request_round()
    assert project.rounds() == []
    assert project.next_task("ana") is None
    # The project stays usable: the next import and label work as usual.
    assert project.status().n_samples == 0


def test_pool_smaller_than_one_batch(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    """4 open samples against a training batch of 16 and an acquisition batch of 10."""
    ws = sqlite_workspace
    project = make_project(
        ws, tmp_path / "images", n_labeled=2, n_open=0, n_test=2, settings={"batch_size": 16}
    )
    open_rows = project.import_manifest(
        _manifest_of_open_images(tmp_path / "open", count=4)
    ).accepted
    assert len(open_rows) == 4
    project.request_round()
    assert run_one(ws, project) == "succeeded"
    first = project.next_task("ana")
    assert first is not None and first.strategy != "cold_start"
    assert first.rank == 1 and "mutual_information" in first.scores
    # Label the whole pool: the queue says it is exhausted, and another round still succeeds
    # with nothing left to score.
    task = first
    served = 0
    while task is not None:
        project.submit(task.id, label=CLASSES[0], annotator="ana")
        served += 1
        task = project.next_task("ana")
    assert served == 4
    status = project.status()
    assert status.pool_exhausted
    project.request_round()
    assert run_one(ws, project) == "succeeded"
    assert project.next_task("ana") is None
    assert len(project.labels()) == 2 * len(CLASSES) + 4


def _manifest_of_open_images(folder: Path, *, count: int) -> Path:
    rows: list[tuple[int, int, str | None, str | None]] = [
        (i % len(CLASSES), 5000 + i, None, "pool") for i in range(count)
    ]
    return write_manifest(folder, rows, name="open")
