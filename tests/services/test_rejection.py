"""Reject ("not a valid sample"): the sample leaves the queue, training and scores; a lead
restores it. Real databases (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from pathlib import Path

import pytest

from activelearn import NotAllowed, Project, TaskNotCurrent, Workspace
from activelearn.errors import InvalidReason
from db import queries
from db.engine import read_session
from tests.conftest import write_images
from tests.services.test_rounds import make_project, run_one

CLASSES = ["circle", "square", "triangle"]


def _project(ws: Workspace, tmp_path: Path, n: int = 5) -> Project:
    project = ws.create_project("shapes", CLASSES, settings={"audit_share": 0.0})
    project.import_images(write_images(tmp_path / "pool", n)[0].parent)
    return project


def _serve_all(project: Project, annotator: str) -> list[int]:
    """Sample ids served until the queue is empty (each is labeled to move on)."""
    served = []
    while (task := project.next_task(annotator)) is not None:
        served.append(task.sample_id)
        project.submit(task.id, CLASSES[len(served) % 3], annotator=annotator)
    return served


def test_a_rejected_sample_leaves_the_queue_with_its_reason(
    workspace: Workspace, tmp_path: Path
) -> None:
    p = _project(workspace, tmp_path)
    task = p.next_task("ana")
    assert task is not None
    p.reject(task.id, annotator="ana", reason="  blank\nimage ")
    status = p.status()
    assert (status.n_rejected, status.n_unlabeled) == (1, 4)
    frame = p.rejected()
    assert list(frame["sample_id"]) == [task.sample_id]
    assert list(frame["reason"]) == ["blank image"] and list(frame["annotator"]) == ["ana"]
    assert task.sample_id not in _serve_all(p, "ana")  # the other 4, never the rejected one
    assert p.status().pool_exhausted
    with pytest.raises(TaskNotCurrent, match="rejected as not valid"):
        p.submit(task.id, "circle", annotator="ana")
    assert task.sample_id not in set(p.labels()["sample_id"])


def test_only_the_holder_rejects_and_a_long_reason_stores_nothing(
    workspace: Workspace, tmp_path: Path
) -> None:
    p = _project(workspace, tmp_path)
    task = p.next_task("ana")
    assert task is not None
    with pytest.raises(TaskNotCurrent, match="held by ana, not eve"):
        p.reject(task.id, annotator="eve")
    with pytest.raises(InvalidReason, match="at most 500"):
        p.reject(task.id, annotator="ana", reason="x" * 501)
    assert p.status().n_rejected == 0 and p.rejected().empty
    p.reject(task.id, annotator="ana")  # no reason is fine
    assert list(p.rejected()["reason"].isna()) == [True]
    with pytest.raises(TaskNotCurrent):
        p.reject(task.id, annotator="ana")  # once


def test_a_lead_restores_and_an_annotator_may_not(workspace: Workspace, tmp_path: Path) -> None:
    _project(workspace, tmp_path)
    workspace.set_role("lena", "lead")
    workspace.set_role("ana", "annotator")
    ana = workspace.as_user("ana").project("shapes")
    lena = workspace.as_user("lena").project("shapes")
    task = ana.next_task("ana")
    assert task is not None
    ana.reject(task.id, annotator="ana", reason="off-topic")
    with pytest.raises(NotAllowed, match="Only a lead may restore"):
        ana.restore_rejected(task.sample_id)
    lena.restore_rejected(task.sample_id)
    assert lena.status().n_rejected == 0 and lena.rejected().empty
    assert task.sample_id in _serve_all(ana, "ana")  # back in the queue
    log = workspace.as_user("lena").audit_log()
    assert "restore rejected sample" in set(log["action"])


def test_rejection_survives_a_restart(db_url: str, tmp_path: Path) -> None:
    with Workspace(db_url, data_dir=tmp_path / "data") as ws:
        p = _project(ws, tmp_path)
        task = p.next_task("ana")
        assert task is not None
        p.reject(task.id, annotator="ana", reason="broken")
    with Workspace(db_url, data_dir=tmp_path / "data") as ws:
        p = ws.project("shapes")
        assert list(p.rejected()["sample_id"]) == [task.sample_id]
        assert p.status().n_rejected == 1


def test_a_rejected_sample_is_neither_trained_on_nor_scored(
    workspace: Workspace, tmp_path: Path, one_torch_thread: None
) -> None:
    p = make_project(workspace, tmp_path / "images", settings={"audit_share": 0.0})
    task = p.next_task("ana")
    assert task is not None
    p.reject(task.id, annotator="ana", reason="junk")
    p.request_round(requested_by="test")
    assert run_one(workspace, p) == "succeeded"
    round_id = p.last_round().id
    with read_session(workspace.engine) as session:
        assert queries.score_row(session, round_id, task.sample_id) is None
        trained = {row[0] for row in queries.samples_for_training(session, p.id, "pool")}
        open_ids = {row[0] for row in queries.unlabeled_pool(session, p.id)}
        other = next(iter(open_ids))
        assert queries.score_row(session, round_id, other) is not None
    assert task.sample_id not in trained | open_ids
