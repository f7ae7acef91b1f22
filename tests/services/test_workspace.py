"""The public API end to end on a real database: projects, import, queue, labels, undo."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

import activelearn
from activelearn import (
    InvalidAnnotator,
    InvalidClasses,
    NotAllowed,
    NothingToUndo,
    ProjectExists,
    ProjectNotFound,
    UnknownLabel,
    UnknownTask,
    Workspace,
)
from db.engine import read_session, write_session
from db.models import AcquisitionEntry, Annotation, Lease, Sample
from tests.conftest import write_images


def _project(ws: Workspace, tmp_path: Path, n: int = 12, name: str = "p") -> activelearn.Project:
    project = ws.create_project(name, classes=["cat", "dog"])
    report = project.import_images(write_images(tmp_path / f"imgs-{name}", n)[0].parent)
    assert len(report.accepted) == n
    return project


def test_create_and_find_projects(workspace: Workspace) -> None:
    p = workspace.create_project("digits", classes=["0", "1", "2"])
    assert workspace.project("digits").id == p.id
    assert [x.name for x in workspace.projects()] == ["digits"]
    assert p.classes == ["0", "1", "2"]
    with pytest.raises(ProjectExists, match="already exists"):
        workspace.create_project("digits", classes=["a", "b"])
    with pytest.raises(ProjectNotFound, match=r"no project named 'nope'.*digits"):
        workspace.project("nope")


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["a"], "at least two"),
        (["a", "a"], "duplicate class names: a"),
        (["a", " "], "must not be empty"),
    ],
)
def test_bad_classes_are_refused(workspace: Workspace, classes: list[str], message: str) -> None:
    with pytest.raises(InvalidClasses, match=message):
        workspace.create_project("x", classes=classes)


def test_label_round_trip_and_persistence(db_url: str, tmp_path: Path) -> None:
    with Workspace(db_url, data_dir=tmp_path / "data") as ws:
        p = _project(ws, tmp_path)
        task = p.next_task(annotator="ana")
        assert task is not None and Path(task.image).exists()
        assert task.strategy in {"cold_start", "audit"} and task.scores == {}
        p.submit(task.id, label="dog", annotator="ana")
    # A new workspace on the same database (an app restart) sees the label.
    with Workspace(db_url, data_dir=tmp_path / "data") as ws:
        frame = ws.project("p").labels()
        assert frame[["sample_id", "label", "annotator"]].values.tolist() == [
            [task.sample_id, "dog", "ana"]
        ]
        assert list(frame.columns[:5]) == ["sample_id", "path", "label", "annotator", "labeled_at"]


def test_submit_is_idempotent_and_validates(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path)
    task = p.next_task(annotator="ana")
    assert task is not None
    p.submit(task.id, label="cat", annotator="ana")
    p.submit(task.id, label="cat", annotator="ana")
    assert len(p.labels()) == 1
    with pytest.raises(UnknownLabel, match="unknown label 'bird'; the classes are: cat, dog"):
        p.submit(task.id, label="bird", annotator="ana")
    with pytest.raises(UnknownTask):
        p.submit(999_999, label="cat", annotator="ana")
    with pytest.raises(InvalidAnnotator):
        p.next_task(annotator="  ")
    # A different label for the same task corrects it, and history keeps both.
    p.submit(task.id, label="dog", annotator="ana")
    assert p.labels()["label"].tolist() == ["dog"]
    with read_session(workspace.engine) as session:
        rows = session.scalars(select(Annotation).order_by(Annotation.id)).all()
        assert [(r.label, r.superseded) for r in rows] == [("cat", True), ("dog", False)]


def test_two_annotators_never_share_a_sample(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path, n=4)
    a = p.next_task(annotator="ana")
    b = p.next_task(annotator="bob")
    assert a is not None and b is not None and a.sample_id != b.sample_id
    # Asking again returns the task already held, not a new sample.
    again = p.next_task(annotator="ana")
    assert again is not None and again.id == a.id


def test_expired_lease_returns_sample_to_queue(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path, n=1)
    held = p.next_task(annotator="ana")
    assert held is not None
    assert p.next_task(annotator="bob") is None
    with write_session(workspace.engine) as session:
        lease = session.get(Lease, held.sample_id)
        lease.expires_at = lease.expires_at - timedelta(hours=1)
    task = p.next_task(annotator="bob")
    assert task is not None and task.sample_id == held.sample_id


def test_skip_moves_sample_behind_others(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path, n=3)
    p.update_settings(audit_share=0.0)
    first = p.next_task(annotator="ana")
    assert first is not None
    p.skip(first.id, annotator="ana")
    served = []
    for _ in range(3):
        task = p.next_task(annotator="ana")
        assert task is not None
        served.append(task.sample_id)
        p.submit(task.id, label="cat", annotator="ana")
    assert served[-1] == first.sample_id
    assert p.next_task(annotator="ana") is None
    assert p.status().pool_exhausted


def test_undo_keeps_history_and_brings_sample_back(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path, n=5)
    task = p.next_task(annotator="ana")
    assert task is not None
    p.submit(task.id, label="cat", annotator="ana")
    back = p.undo(annotator="ana")
    assert back.sample_id == task.sample_id
    assert p.labels().empty
    assert p.next_task(annotator="ana").id == back.id  # held for ana
    with pytest.raises(NothingToUndo):
        p.undo(annotator="bob")
    p.submit(back.id, label="dog", annotator="ana")
    assert p.labels()["label"].tolist() == ["dog"]
    with read_session(workspace.engine) as session:
        history = session.scalars(select(Annotation).order_by(Annotation.id)).all()
        assert [(r.label, r.superseded) for r in history] == [("cat", True), ("dog", False)]


def test_an_audit_sample_left_without_a_label_goes_back_to_the_pool(
    workspace: Workspace, tmp_path: Path
) -> None:
    p = _project(workspace, tmp_path, n=40)
    p.update_settings(audit_share=0.9)
    task = p.next_task(annotator="ana")
    while task is not None and task.strategy != "audit":
        p.skip(task.id, annotator="ana")
        task = p.next_task(annotator="ana")
    assert task is not None and task.strategy == "audit"
    p.submit(task.id, label="cat", annotator="ana")
    assert p.status().n_eval == 1
    p.relabel(task.sample_id, "dog", annotator="ana")
    p.undo(annotator="ana")  # withdraws "dog": the audit label "cat" is back
    assert p.labels()["label"].tolist() == ["cat"] and p.status().n_eval == 1
    p.undo(annotator="ana")  # withdraws "cat": nothing is left
    assert p.labels().empty
    with read_session(workspace.engine) as session:
        sample = session.get(Sample, task.sample_id)
        assert sample is not None and (sample.split, sample.status) == ("pool", "open")
    assert p.status().n_eval == 0


def test_a_grid_page_is_stored_whole_or_not_at_all(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path, n=6)
    first, second, third = (t.id for t in p.next_tasks("ana", count=3))
    with pytest.raises(UnknownLabel):
        p.submit_page({first: "cat", second: "zebra", third: None}, annotator="ana")
    assert p.labels().empty  # the good label before the bad one was not kept either
    stored, released, queued = p.submit_page(
        {first: "cat", second: "dog", third: None}, annotator="ana"
    )
    assert (stored, released) == (2, 1)
    # two classes labeled with retrain_every 1 (the default): the page queued a round
    assert queued is not None and queued.status == "queued"
    assert sorted(p.labels()["label"]) == ["cat", "dog"]
    with read_session(workspace.engine) as session:
        entry = session.get(AcquisitionEntry, third)
        assert entry is not None and entry.outcome == "released"


def test_relabel_and_recent_labels(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path, n=4)
    for _ in range(3):
        task = p.next_task(annotator="ana")
        assert task is not None
        p.submit(task.id, label="cat", annotator="ana")
    recent = p.recent_labels("ana")
    assert len(recent) == 3 and all(r.label == "cat" for r in recent)
    p.relabel(recent[-1].sample_id, "dog", annotator="ana")
    labels = dict(zip(p.labels()["sample_id"], p.labels()["label"], strict=True))
    assert labels[recent[-1].sample_id] == "dog"
    assert sorted(labels.values()) == ["cat", "cat", "dog"]


def test_audit_tasks_become_the_evaluation_set(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path, n=20)
    p.update_settings(audit_share=0.5)
    p._rng.seed(1)
    strategies = []
    while (task := p.next_task(annotator="ana")) is not None:
        strategies.append(task.strategy)
        p.submit(task.id, label="cat", annotator="ana")
    status = p.status()
    assert strategies.count("audit") == status.n_eval > 0
    assert status.n_labeled + status.n_eval == 20
    with read_session(workspace.engine) as session:
        logged = session.scalars(select(AcquisitionEntry.strategy)).all()
        assert sorted(logged) == sorted(strategies)


def test_allow_list_is_enforced_in_the_service(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path, n=2)
    p.update_settings(allowed_annotators=["ana"])
    assert p.next_task(annotator="ana") is not None
    with pytest.raises(NotAllowed, match="'eve' is not on the annotator list"):
        p.next_task(annotator="eve")


def test_status_counts(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path, n=6)
    status = p.status()
    assert (status.n_samples, status.n_pool, status.n_unlabeled, status.n_labeled) == (6, 6, 6, 0)
    assert status.current_round_id is None and not status.pool_exhausted
