"""Rejecting a served sample as "not a valid sample" (broken, blank, off-topic) and restoring it.

A rejected sample leaves the queue, training, evaluation and scoring (its status is `rejected`
until a lead restores it); its labels, if it had any, are kept as they were. The acting
annotator must hold the task, as for a skip.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy.orm import Session

from activelearn.clock import utcnow
from activelearn.errors import InvalidReason, UnknownTask
from activelearn.services import access, labeling
from db import queries
from db import rejections as rejection_queries
from db.engine import read_session, with_write_retry

if TYPE_CHECKING:
    from activelearn.services.project import Project

MAX_REASON = 500
REJECTED_COLUMNS = ["sample_id", "path", "split", "annotator", "reason", "rejected_at"]


def clean_reason(reason: str | None) -> str | None:
    """The reason as stored: trimmed, control characters removed, None when empty."""
    if reason is None:
        return None
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", str(reason)).strip()
    if len(text) > MAX_REASON:
        raise InvalidReason(f"a rejection reason is at most {MAX_REASON} characters")
    return text or None


def reject(project: Project, task_id: int, *, annotator: str, reason: str | None = None) -> None:
    """Mark the sample of a task `annotator` holds as not valid; the task closes as rejected."""
    why = clean_reason(reason)

    def work(session: Session) -> None:
        name = labeling.check_annotator(
            session,
            project_id=project.id,
            user=project.workspace.user,
            annotator=annotator,
            action="reject samples",
        )
        entry = labeling.task_entry(session, project.id, task_id, project_name=project.name)
        now = utcnow()
        closed = labeling.give_back(
            session,
            entry,
            annotator=name,
            user=project.workspace.user,
            outcome="rejected",
            now=now,
        )
        if not closed:
            raise labeling.stale_task(entry, annotator=name)
        rejection_queries.reject_sample(
            session,
            project_id=project.id,
            sample_id=entry.sample_id,
            annotator=name,
            reason=why,
            now=now,
        )

    with_write_retry(project.engine, work)


def restore(project: Project, sample_id: int) -> None:
    """A lead puts a rejected sample back: it returns to the queue (or to its label)."""

    def work(session: Session) -> None:
        access.require_lead(session, project.workspace.user, "restore rejected samples")
        sample = queries.get_sample(session, int(sample_id))
        if sample is None or sample.project_id != project.id:
            raise UnknownTask(f"no sample {sample_id} in project {project.name!r}")
        by = access.shown(project.workspace.user)
        if not rejection_queries.restore_sample(session, sample.id, by=by, now=utcnow()):
            raise UnknownTask(f"sample {sample_id} is not rejected")
        queries.refresh_sample_label(session, sample.id)
        access.audit(
            session,
            project.workspace.user,
            "restore rejected sample",
            project=project,
            sample_id=sample.id,
        )

    with_write_retry(project.engine, work)


def rejected(project: Project) -> pd.DataFrame:
    """The project's rejected samples, newest first (columns REJECTED_COLUMNS)."""
    with read_session(project.engine) as session:
        rows = rejection_queries.live_rejections(session, project.id)
    return pd.DataFrame(rows, columns=REJECTED_COLUMNS)
