"""The label bugs of issue 15, one test each: one live label per sample, whoever gives it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from activelearn import NothingToRelabel, Project, TaskNotCurrent, Workspace
from activelearn.services import export
from db import queries
from db.engine import write_session
from tests.conftest import write_images

CLASSES = ["circle", "square", "triangle"]


def _project(ws: Workspace, tmp_path: Path, n: int = 6) -> Project:
    project = ws.create_project("shapes", CLASSES, settings={"audit_share": 0.0})
    project.import_images(write_images(tmp_path / "pool", n)[0].parent)
    return project


def _labels(project: Project) -> list[tuple[int, str, str]]:
    frame = project.labels()
    return sorted(zip(frame["sample_id"], frame["label"], frame["annotator"], strict=True))


def test_a_task_leased_to_someone_else_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path)
    t2 = p.next_task("ana")
    assert t2 is not None
    with pytest.raises(TaskNotCurrent, match="held by ana, not eve"):
        p.submit(t2.id, "circle", annotator="eve")
    p.submit(t2.id, "square", annotator="ana")
    with pytest.raises(TaskNotCurrent, match="served to ana, not eve"):
        p.submit(t2.id, "circle", annotator="eve")  # answered by ana: not eve's to change
    assert _labels(p) == [(t2.sample_id, "square", "ana")]
    with pytest.raises(TaskNotCurrent):
        p.skip(p.next_task("ana").id, annotator="eve")  # nor to skip or give back


def test_resubmitting_a_task_after_its_undo_is_refused(
    workspace: Workspace, tmp_path: Path
) -> None:
    p = _project(workspace, tmp_path)
    t = p.next_task("ana")
    assert t is not None
    p.submit(t.id, "triangle", annotator="ana")
    u = p.undo(annotator="ana")
    assert u.sample_id == t.sample_id and u.id != t.id
    p.submit(u.id, "circle", annotator="ana")
    with pytest.raises(TaskNotCurrent, match="withdrawn or replaced"):
        p.submit(t.id, "triangle", annotator="ana")
    assert _labels(p) == [(t.sample_id, "circle", "ana")]


def test_a_double_submit_and_a_correction_by_task_keep_one_label(
    workspace: Workspace, tmp_path: Path
) -> None:
    p = _project(workspace, tmp_path)
    t = p.next_task("ana")
    assert t is not None
    p.submit(t.id, "circle", annotator="ana")
    p.submit(t.id, "circle", annotator="ana")
    p.submit(t.id, "square", annotator="ana")  # her own answer, still live: a correction
    p.submit(t.id, "triangle", annotator="ana")
    assert _labels(p) == [(t.sample_id, "triangle", "ana")]
    p.undo(annotator="ana")
    assert _labels(p) == [(t.sample_id, "square", "ana")]


def test_relabel_of_an_imported_label_keeps_one_row(workspace: Workspace, tmp_path: Path) -> None:
    p = workspace.create_project("shapes", CLASSES)
    write_images(tmp_path / "src" / "circle", 3)
    write_images(tmp_path / "src" / "square", 2, start=3)
    p.import_images(tmp_path / "src")
    before = _labels(p)
    assert len(before) == 5 and {a for _, _, a in before} == {"import"}
    sample_id = before[0][0]
    p.relabel(sample_id, "triangle", annotator="ana")
    after = _labels(p)
    assert len(after) == 5 and (sample_id, "triangle", "ana") in after
    csv_rows = export.read_labels_csv(export.labels_csv_bytes(p))
    assert len(csv_rows) == 5 and csv_rows["sample_id"].is_unique


def test_undo_after_relabel_restores_the_label_before(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path)
    t = p.next_task("ana")
    assert t is not None
    p.submit(t.id, "circle", annotator="ana")
    p.relabel(t.sample_id, "square", annotator="ana")
    p.relabel(t.sample_id, "triangle", annotator="bob")
    p.undo(annotator="bob")
    assert _labels(p) == [(t.sample_id, "square", "ana")]
    p.undo(annotator="ana")
    assert _labels(p) == [(t.sample_id, "circle", "ana")]
    p.undo(annotator="ana")
    assert _labels(p) == []


def test_relabel_needs_a_label_and_the_sample_not_held_by_another(
    workspace: Workspace, tmp_path: Path
) -> None:
    p = _project(workspace, tmp_path)
    t = p.next_task("ana")
    assert t is not None
    with pytest.raises(NothingToRelabel, match="no label to correct"):
        p.relabel(t.sample_id, "circle", annotator="bob")
    p.submit(t.id, "circle", annotator="ana")
    p.relabel(t.sample_id, "square", annotator="ana")
    p.undo(annotator="ana")  # "circle" back, and the sample held for ana again
    with pytest.raises(TaskNotCurrent, match="ana holds sample"):
        p.relabel(t.sample_id, "triangle", annotator="bob")
    assert _labels(p) == [(t.sample_id, "circle", "ana")]


def test_the_database_refuses_a_second_live_label(workspace: Workspace, tmp_path: Path) -> None:
    p = _project(workspace, tmp_path)
    t = p.next_task("ana")
    assert t is not None
    p.submit(t.id, "circle", annotator="ana")
    with pytest.raises(IntegrityError), write_session(workspace.engine) as session:
        queries.add_annotation(
            session,
            project_id=p.id,
            sample_id=t.sample_id,
            task_id=None,
            label="square",
            annotator="eve",
            now=t.expires_at,
        )
    assert _labels(p) == [(t.sample_id, "circle", "ana")]
