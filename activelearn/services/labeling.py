"""Who may answer a task, and how a label takes the place of a sample's live one.

The database holds at most one live label per sample (uq_annotations_one_live); these helpers
run inside the caller's write transaction and keep every change a replacement with history:
a new label records the live one it replaced, and an undo makes that one live again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from activelearn.errors import NotAllowed, TaskNotCurrent, UnknownTask
from activelearn.services import access
from activelearn.services.settings import ProjectSettings
from activelearn.services.validation import validate_annotator
from db import people, queries
from db.models import AcquisitionEntry, Annotation

MAX_HISTORY = 10_000  # a bound on walking a label's replacements (never reached in practice)


def check_annotator(
    session: Session, *, project_id: int, user: str | None, annotator: str, action: str = "label"
) -> str:
    """The annotator's name, once the acting user may act as them and the project's annotator
    list (when it has one) names them."""
    name = validate_annotator(annotator)
    access.check_acts_as(session, user, name, action)
    row = queries.get_project_by_id(session, project_id)
    allowed = ProjectSettings.from_json(row.settings if row else {}).allowed_annotators
    if allowed and name not in allowed:
        project = row.name if row else project_id
        raise NotAllowed(f"{name!r} is not on the annotator list of project {project!r}")
    return name


def task_entry(
    session: Session, project_id: int, task_id: int, *, project_name: str | None = None
) -> AcquisitionEntry:
    """The task `task_id` of this project (UnknownTask otherwise)."""
    entry = queries.get_task(session, int(task_id))
    if entry is None or entry.project_id != project_id:
        where = f"project {project_name!r}" if project_name else "this project"
        raise UnknownTask(f"no task {task_id} in {where}")
    return entry


def give_back(
    session: Session,
    entry: AcquisitionEntry,
    *,
    annotator: str,
    user: str | None,
    outcome: str,
    now: datetime,
) -> bool:
    """Close a task `annotator` holds (skipped, released, rejected); False when it was not open
    any more (answered, given back, or taken over: nothing is held)."""
    if entry.outcome is not None or queries.lease_of_task(session, entry.id) is None:
        return False
    check_task_is_theirs(session, entry=entry, annotator=annotator, user=user)
    queries.release_task(session, entry.id, outcome=outcome, now=now)
    return True


def may_act_for_others(session: Session, user: str | None) -> bool:
    """Whether the acting `user` may answer, skip or give back tasks served to someone else.

    Only a registered lead may. Open mode (no lead yet) and the local operator (user None) keep
    the lease rule, so a typed name can never take over another annotator's task.
    """
    if user is None:
        return False
    row = people.get_user(session, user)
    return row is not None and row.role == "lead"


def check_may_replace(
    session: Session, *, user: str | None, live: Annotation, annotator: str
) -> None:
    """NotAllowed when, on a team server, an annotator would replace someone else's label."""
    if live.annotator == annotator or not people.any_lead(session):
        return  # open mode: anyone corrects any label, as before roles existed
    if user is None or may_act_for_others(session, user):
        return
    raise NotAllowed(
        f"{live.annotator!r} gave sample {live.sample_id}'s label: only a lead may correct it "
        "(use send back for review to ask for a second look)"
    )


def check_task_is_theirs(
    session: Session, *, entry: AcquisitionEntry, annotator: str, user: str | None
) -> None:
    """Raise TaskNotCurrent unless `annotator` holds task `entry`'s lease (or may act for others).

    A lease that expired while nobody else took the sample still counts as held: the sample was
    not served to anyone else in the meantime.
    """
    lease = queries.lease_of_task(session, entry.id)
    if lease is None:
        raise stale_task(entry)
    if lease.annotator != annotator and not may_act_for_others(session, user):
        raise TaskNotCurrent(
            f"task {entry.id} is held by {lease.annotator}, not {annotator}: "
            "ask for your own next task"
        )


def stale_task(entry: AcquisitionEntry, *, annotator: str | None = None) -> TaskNotCurrent:
    """The error for a task that can no longer be answered, saying why."""
    if annotator is not None and entry.annotator != annotator:
        return TaskNotCurrent(
            f"task {entry.id} was served to {entry.annotator}, not {annotator}: "
            "ask for your own next task (a label is corrected with relabel)"
        )
    why = {
        "skipped": "it was skipped",
        "released": "it was given back",
        "labeled": "its label was withdrawn or replaced",
        "rejected": "its sample was rejected as not valid",
    }.get(entry.outcome or "", "its hold expired and the sample went to someone else")
    return TaskNotCurrent(f"task {entry.id} is no longer current ({why}): ask for the next task")


def answered_label_still_current(
    session: Session, entry: AcquisitionEntry, annotator: str
) -> Annotation | None:
    """The sample's live label when it is still `annotator`'s answer to task `entry`.

    That is: the task's label, or a chain of the annotator's own corrections of it, is live. An
    undo, a send-back or someone else's correction in between makes the task stale (None).
    """
    own = queries.annotation_for_task(session, entry.id)
    node = queries.live_annotation(session, entry.sample_id)
    live = node
    if own is None:
        return None
    for _ in range(MAX_HISTORY):
        if node is None or node.annotator != annotator:
            return None
        if node.id == own.id:
            return live
        if node.replaces_id is None:
            return None
        node = queries.get_annotation(session, node.replaces_id)
    return None


def replace_live_label(
    session: Session,
    *,
    project_id: int,
    sample_id: int,
    label: str,
    annotator: str,
    task_id: int | None,
    now: datetime,
    make_eval: bool = False,
) -> int:
    """Store `label` as the sample's one live label; the previous one becomes its history.

    The sample's own label and split follow (make_eval: an audit task's answer joins the
    evaluation set), so no caller can change a label without them.
    """
    live = queries.live_annotation(session, sample_id)
    if live is not None:
        queries.supersede(session, live.id, now)
    annotation_id = queries.add_annotation(
        session,
        project_id=project_id,
        sample_id=sample_id,
        task_id=task_id,
        label=label,
        annotator=annotator,
        now=now,
        replaces_id=live.id if live is not None else None,
    )
    queries.refresh_sample_label(session, sample_id, make_eval=make_eval)
    return annotation_id


def withdraw_label(session: Session, annotation: Annotation, now: datetime) -> int | None:
    """Undo one live label: it becomes history and the label it replaced is live again.

    Returns the restored annotation's id, or None when the sample is left without a label.
    """
    queries.supersede(session, annotation.id, now)
    restored = annotation.replaces_id
    if restored is not None:
        queries.restore(session, restored)
    queries.refresh_sample_label(session, annotation.sample_id)
    return restored
