"""Queries for rejected samples ("not a valid sample"). Take a Session, never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Rejection, Sample


def reject_sample(
    session: Session,
    *,
    project_id: int,
    sample_id: int,
    annotator: str,
    reason: str | None,
    now: datetime,
) -> Rejection:
    """Record the rejection and take the sample out of the queue (status `rejected`)."""
    row = Rejection(
        project_id=project_id,
        sample_id=sample_id,
        annotator=annotator,
        reason=reason,
        created_at=now,
    )
    session.add(row)
    session.execute(update(Sample).where(Sample.id == sample_id).values(status="rejected"))
    session.flush()
    return row


def restore_sample(session: Session, sample_id: int, *, by: str, now: datetime) -> int:
    """End the sample's live rejection; the caller recomputes its status from its labels.
    Returns the number of rejections ended (0 when it was not rejected)."""
    ended = session.execute(
        update(Rejection)
        .where(Rejection.sample_id == sample_id, Rejection.restored_at.is_(None))
        .values(restored_at=now, restored_by=by)
    ).rowcount
    session.execute(
        update(Sample)
        .where(Sample.id == sample_id, Sample.status == "rejected")
        .values(status="open")
    )
    return int(ended or 0)


def live_rejections(session: Session, project_id: int) -> list[tuple[Any, ...]]:
    """(sample_id, path, split, annotator, reason, created_at) of the project's rejected
    samples, newest first."""
    rows = session.execute(
        select(
            Rejection.sample_id,
            Sample.path,
            Sample.split,
            Rejection.annotator,
            Rejection.reason,
            Rejection.created_at,
        )
        .join(Sample, Sample.id == Rejection.sample_id)
        .where(Rejection.project_id == project_id, Rejection.restored_at.is_(None))
        .order_by(Rejection.id.desc())
    )
    return [tuple(row) for row in rows]
