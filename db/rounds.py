"""Query functions for training rounds (jobs), their metrics, curves and per-sample scores.

Every function takes a Session and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

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


def request_cancel(session: Session, round_id: int, now: datetime) -> None:
    """A queued round is cancelled at once; a running one when its worker next looks."""
    session.execute(
        update(Round)
        .where(Round.id == round_id, Round.status == "queued")
        .values(
            status="cancelled", phase="cancelled", finished_at=now, error="cancelled by request"
        )
    )
    session.execute(
        update(Round)
        .where(Round.id == round_id, Round.status == "running")
        .values(cancel_requested=True)
    )


# ---------------------------------------------------------------- the worker's side


def claim_next_round(
    session: Session, *, worker: str, now: datetime, round_id: int | None = None
) -> int | None:
    """Mark the oldest queued round (or round `round_id`, if queued) running for `worker`; its
    id, or None when none is queued.

    One UPDATE whose WHERE re-checks status='queued': two workers racing for the same row both
    run the statement, but only the first changes it (SQLite serialises writers through BEGIN
    IMMEDIATE; PostgreSQL re-evaluates the WHERE on the locked row), so the loser gets no row.
    """
    queued = select(Round.id).where(Round.status == "queued")
    if round_id is not None:
        queued = queued.where(Round.id == round_id)
    oldest = queued.order_by(Round.id).limit(1).scalar_subquery()
    claimed = session.execute(
        update(Round)
        .where(Round.id == oldest, Round.status == "queued")
        .values(
            status="running",
            phase="starting",
            worker=worker,
            started_at=now,
            heartbeat_at=now,
        )
        .returning(Round.id)
    ).scalar()
    return int(claimed) if claimed is not None else None


def heartbeat(
    session: Session,
    round_id: int,
    *,
    worker: str,
    now: datetime,
    phase: str | None = None,
    progress: float | None = None,
    detail: dict[str, Any] | None = None,
) -> tuple[bool, bool]:
    """Record liveness (and progress) of a running round owned by `worker`.

    Returns (still_ours, cancel_requested). still_ours is False when the round was reaped or
    finished elsewhere: the worker must then stop without writing anything more.
    """
    values: dict[str, Any] = {"heartbeat_at": now}
    if phase is not None:
        values["phase"] = phase
    if progress is not None:
        values["progress"] = progress
    if detail is not None:
        values["detail"] = detail
    row = session.execute(
        update(Round)
        .where(Round.id == round_id, Round.status == "running", Round.worker == worker)
        .values(**values)
        .returning(Round.cancel_requested)
    ).first()
    if row is None:
        return False, False
    return True, bool(row[0])


def set_running_fields(session: Session, round_id: int, *, worker: str, **values: Any) -> bool:
    """Update columns of a running round this worker owns; False when it is no longer ours."""
    result = session.execute(
        update(Round)
        .where(Round.id == round_id, Round.status == "running", Round.worker == worker)
        .values(**values)
    )
    return bool(result.rowcount)


def finish_round(
    session: Session,
    round_id: int,
    *,
    worker: str | None,
    status: str,
    now: datetime,
    error: str | None = None,
    **values: Any,
) -> bool:
    """Move a running round to a final status (only if still running, and ours when given)."""
    conditions = [Round.id == round_id, Round.status == "running"]
    if worker is not None:
        conditions.append(Round.worker == worker)
    result = session.execute(
        update(Round)
        .where(*conditions)
        .values(
            status=status,
            phase=status if status != "succeeded" else "done",
            finished_at=now,
            error=error,
            **values,
        )
    )
    return bool(result.rowcount)


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
    stale = stale_round_ids(session, older_than=older_than, project_id=project_id)
    if stale:
        session.execute(
            update(Round)
            .where(Round.id.in_(stale), Round.status == "running")
            .values(status="failed", phase="failed", finished_at=now, error=error)
        )
    return stale


def stale_round_ids(
    session: Session, *, older_than: datetime, project_id: int | None = None
) -> list[int]:
    """Running rounds (of one project, when given) with no heartbeat since `older_than`."""
    conditions = [
        Round.status == "running",
        (Round.heartbeat_at < older_than) | Round.heartbeat_at.is_(None),
    ]
    if project_id is not None:
        conditions.append(Round.project_id == project_id)
    return [int(i) for i in session.scalars(select(Round.id).where(*conditions))]


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


def rounds_to_prune(
    session: Session, project_id: int, *, keep: int
) -> list[tuple[int, str | None]]:
    """(id, checkpoint) of the succeeded rounds older than the newest `keep` that still hold
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
    rows = session.execute(
        select(Round.id, Round.checkpoint)
        .where(
            Round.project_id == project_id,
            Round.status == "succeeded",
            Round.id < min(kept),
            Round.checkpoint.is_not(None) | has_scores,
        )
        .order_by(Round.id)
    )
    return [(int(i), checkpoint) for i, checkpoint in rows]


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
