"""Query functions for training rounds (jobs), their metrics, curves and per-sample scores.

Every function takes a Session and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from db import jobs
from db.models import (
    ACTIVE_ROUND_STATUSES,
    Round,
    RoundMetric,
    SampleScore,
    TrainingEpoch,
)


def add_round(
    session: Session,
    *,
    project_id: int,
    strategy: str,
    config: dict[str, Any],
    requested_by: str | None,
    now: datetime,
) -> Round:
    row = Round(
        project_id=project_id,
        status="queued",
        phase="queued",
        progress=0.0,
        detail={},
        n_labels=0,
        strategy=strategy,
        config=config,
        cancel_requested=False,
        requested_by=requested_by,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def active_round(session: Session, project_id: int) -> Round | None:
    return session.scalars(
        select(Round)
        .where(Round.project_id == project_id, Round.status.in_(ACTIVE_ROUND_STATUSES))
        .order_by(Round.id.desc())
        .limit(1)
    ).first()


def list_rounds(session: Session, project_id: int) -> list[Round]:
    return list(
        session.scalars(select(Round).where(Round.project_id == project_id).order_by(Round.id))
    )


def get_round(session: Session, round_id: int) -> Round | None:
    return session.get(Round, round_id)


# ---------------------------------------------------------------- the worker's side
# Cancel, heartbeat, running fields and the stale listing are db.jobs's, with the model Round.


def claim_next_round(
    session: Session, *, worker: str, now: datetime, round_id: int | None = None
) -> int | None:
    """Mark the oldest queued round (or round `round_id`, if queued) running for `worker`; its
    id, or None when none is queued (one UPDATE: of two racing workers one wins, see
    db.jobs.claim)."""
    only = [Round.id == round_id] if round_id is not None else []
    return jobs.claim(session, Round, worker=worker, now=now, where=only)


def finish_round(session: Session, round_id: int, **fields: Any) -> bool:
    """db.jobs.finish of a round (fields: worker, status, now, error and columns to set)."""
    return jobs.finish(session, Round, round_id, **fields)


def reap_stale_rounds(
    session: Session,
    *,
    older_than: datetime,
    now: datetime,
    error: str,
    project_id: int | None = None,
) -> list[int]:
    """Fail every running round (of one project, when given) whose last heartbeat is older
    than `older_than`; their ids."""
    stale = [
        int(i) for (i,) in jobs.stale(session, Round, older_than=older_than, project_id=project_id)
    ]
    if stale:
        session.execute(
            update(Round)
            .where(Round.id.in_(stale), Round.status == "running")
            .values(status="failed", phase="failed", finished_at=now, error=error)
        )
    return stale


def has_queued_round(session: Session, round_id: int | None = None) -> bool:
    query = select(Round.id).where(Round.status == "queued")
    if round_id is not None:
        query = query.where(Round.id == round_id)
    return session.scalar(query.limit(1)) is not None


def latest_round(session: Session, project_id: int) -> Round | None:
    return session.scalars(
        select(Round).where(Round.project_id == project_id).order_by(Round.id.desc()).limit(1)
    ).first()


def add_training_epochs(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(TrainingEpoch), rows)


def add_round_metrics(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(RoundMetric), rows)


def add_sample_scores(session: Session, rows: list[dict[str, Any]]) -> None:
    # The table's Core insert, not the ORM's bulk path: these rows are never loaded as
    # objects, and the ORM's per-row bookkeeping was the larger half of the time at 100k.
    if rows:
        session.connection().execute(insert(SampleScore.__table__), rows)


def delete_round_outputs(session: Session, round_id: int) -> None:
    """Drop the scores, metrics and curves of a round that did not succeed (never served)."""
    for table in (SampleScore, RoundMetric, TrainingEpoch):
        session.execute(delete(table).where(table.round_id == round_id))


def rounds_to_prune(session: Session, project_id: int, *, keep: int) -> list[int]:
    """Ids of the succeeded rounds older than the newest `keep` that still hold
    per-sample scores or a checkpoint (a pruned round has neither)."""
    newest = (
        select(Round.id)
        .where(Round.project_id == project_id, Round.status == "succeeded")
        .order_by(Round.id.desc())
        .limit(keep)
    )
    kept = [int(i) for i in session.scalars(newest)]
    if len(kept) < keep:
        return []
    has_scores = select(SampleScore.round_id).where(SampleScore.round_id == Round.id).exists()
    rows = session.scalars(
        select(Round.id)
        .where(
            Round.project_id == project_id,
            Round.status == "succeeded",
            Round.id < min(kept),
            Round.checkpoint.is_not(None) | has_scores,
        )
        .order_by(Round.id)
    )
    return [int(i) for i in rows]


def delete_some_scores(session: Session, round_id: int, *, limit: int) -> int:
    """Delete up to about `limit` of a round's sample_scores rows (lowest sample ids first, so
    each call is a short write); returns how many were deleted."""
    boundary = session.scalar(
        select(SampleScore.sample_id)
        .where(SampleScore.round_id == round_id)
        .order_by(SampleScore.sample_id)
        .offset(limit)
        .limit(1)
    )
    condition = SampleScore.round_id == round_id
    if boundary is not None:
        condition = condition & (SampleScore.sample_id < boundary)
    return int(session.execute(delete(SampleScore).where(condition)).rowcount or 0)


def forget_checkpoint(session: Session, round_id: int) -> None:
    session.execute(update(Round).where(Round.id == round_id).values(checkpoint=None))


def round_metrics(session: Session, round_id: int) -> list[RoundMetric]:
    return list(
        session.scalars(
            select(RoundMetric).where(RoundMetric.round_id == round_id).order_by(RoundMetric.member)
        )
    )


def ranking(session: Session, round_id: int, limit: int | None = None) -> list[int]:
    """Sample ids of a round's ranking, first served first (ranked rows only)."""
    query = (
        select(SampleScore.sample_id)
        .where(SampleScore.round_id == round_id, SampleScore.rank.is_not(None))
        .order_by(SampleScore.rank)
    )
    if limit is not None:
        query = query.limit(limit)
    return [int(i) for i in session.scalars(query)]
