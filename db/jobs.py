"""Query functions shared by the two kinds of background job: training rounds (Round) and
representation jobs (Representation).

Both tables carry the same job columns (status, phase, progress, detail, worker, started_at,
heartbeat_at, finished_at, error, cancel_requested), and a job moves the same way: queued ->
running (claimed by one worker) -> succeeded | failed | cancelled. Every function takes the
model class, takes a Session and never commits. What differs between the kinds (which job a
claim may take, what it counts; what becomes of a job whose worker died) stays in db.rounds
and db.representations.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from db.models import Representation, Round

JobModel = type[Round] | type[Representation]


def request_cancel(session: Session, model: JobModel, job_id: int, now: datetime) -> None:
    """A queued job is cancelled at once; a running one when its worker next looks."""
    session.execute(
        update(model)
        .where(model.id == job_id, model.status == "queued")
        .values(
            status="cancelled", phase="cancelled", finished_at=now, error="cancelled by request"
        )
    )
    session.execute(update(model).where(*running(model, job_id)).values(cancel_requested=True))


def claim(
    session: Session,
    model: JobModel,
    *,
    worker: str,
    now: datetime,
    where: Sequence[ColumnElement[bool]] = (),
    **values: Any,
) -> int | None:
    """Mark the oldest queued job (of those `where` also admits) running for `worker`, with
    `values` set as well; its id, or None when none is queued.

    One UPDATE whose WHERE re-checks status='queued': two workers racing for the same row both
    run the statement, but only the first changes it (SQLite serialises writers through BEGIN
    IMMEDIATE; PostgreSQL re-evaluates the WHERE on the locked row), so the loser gets no row.
    """
    oldest = (
        select(model.id)
        .where(model.status == "queued", *where)
        .order_by(model.id)
        .limit(1)
        .scalar_subquery()
    )
    claimed = session.execute(
        update(model)
        .where(model.id == oldest, model.status == "queued")
        .values(
            status="running",
            phase="starting",
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            **values,
        )
        .returning(model.id)
    ).scalar()
    return int(claimed) if claimed is not None else None


def running(model: JobModel, job_id: int, worker: str | None = None) -> list[ColumnElement[bool]]:
    """The WHERE of job `job_id` while it is running (and held by `worker`, when given)."""
    conditions = [model.id == job_id, model.status == "running"]
    if worker is not None:
        conditions.append(model.worker == worker)
    return conditions


def heartbeat(
    session: Session,
    model: JobModel,
    job_id: int,
    *,
    worker: str,
    now: datetime,
    phase: str | None = None,
    progress: float | None = None,
    detail: dict[str, Any] | None = None,
) -> tuple[bool, bool]:
    """Record liveness (and progress) of a running job owned by `worker`.

    Returns (still_ours, cancel_requested). still_ours is False when the job was reaped or
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
        update(model)
        .where(*running(model, job_id, worker))
        .values(**values)
        .returning(model.cancel_requested)
    ).first()
    if row is None:
        return False, False
    return True, bool(row[0])


def set_running_fields(
    session: Session, model: JobModel, job_id: int, *, worker: str, **values: Any
) -> bool:
    """Update columns of a running job this worker owns; False when it is no longer ours."""
    result = session.execute(update(model).where(*running(model, job_id, worker)).values(**values))
    return bool(result.rowcount)


def finish(
    session: Session,
    model: JobModel,
    job_id: int,
    *,
    worker: str | None,
    status: str,
    now: datetime,
    error: str | None = None,
    **values: Any,
) -> bool:
    """Move a running job to a final status (only if still running, and ours when given)."""
    result = session.execute(
        update(model)
        .where(*running(model, job_id, worker))
        .values(
            status=status,
            phase=status if status != "succeeded" else "done",
            finished_at=now,
            error=error,
            **values,
        )
    )
    return bool(result.rowcount)


def stale(
    session: Session,
    model: JobModel,
    *columns: InstrumentedAttribute[Any],
    older_than: datetime,
    project_id: int | None = None,
) -> list[tuple[Any, ...]]:
    """`columns` (the id when none are named) of the running jobs (of one project, when
    given) with no heartbeat since `older_than`."""
    conditions = [
        model.status == "running",
        (model.heartbeat_at < older_than) | model.heartbeat_at.is_(None),
    ]
    if project_id is not None:
        conditions.append(model.project_id == project_id)
    rows = session.execute(select(*(columns or (model.id,))).where(*conditions))
    return [tuple(row) for row in rows]
