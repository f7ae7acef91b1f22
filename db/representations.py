"""Query functions for representation jobs (a project's self-supervised encoder and embeddings).

Every function takes a Session and never commits. The embeddings themselves live in array
files under the data folder; a row names its file and encoder version once it has succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from db.models import ACTIVE_ROUND_STATUSES, Representation, Sample


def add_representation(
    session: Session, *, project_id: int, requested_by: str | None, now: datetime
) -> Representation:
    row = Representation(
        project_id=project_id,
        status="queued",
        phase="queued",
        progress=0.0,
        detail={},
        n_images=0,
        n_embedded=0,
        cancel_requested=False,
        attempts=0,
        requested_by=requested_by,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def get_representation(session: Session, job_id: int) -> Representation | None:
    return session.get(Representation, job_id)


def active_representation(session: Session, project_id: int) -> Representation | None:
    return session.scalars(
        select(Representation)
        .where(
            Representation.project_id == project_id,
            Representation.status.in_(ACTIVE_ROUND_STATUSES),
        )
        .order_by(Representation.id.desc())
        .limit(1)
    ).first()


def latest_representation(session: Session, project_id: int) -> Representation | None:
    return session.scalars(
        select(Representation)
        .where(Representation.project_id == project_id)
        .order_by(Representation.id.desc())
        .limit(1)
    ).first()


def succeeded_representations(session: Session, project_id: int) -> list[Representation]:
    """The project's succeeded jobs, newest first (the first one's embeddings are served)."""
    return list(
        session.scalars(
            select(Representation)
            .where(Representation.project_id == project_id, Representation.status == "succeeded")
            .order_by(Representation.id.desc())
        )
    )


def list_representations(session: Session, project_id: int) -> list[Representation]:
    return list(
        session.scalars(
            select(Representation)
            .where(Representation.project_id == project_id)
            .order_by(Representation.id)
        )
    )


def request_cancel(session: Session, job_id: int, now: datetime) -> None:
    """A queued job is cancelled at once; a running one when its worker next looks."""
    session.execute(
        update(Representation)
        .where(Representation.id == job_id, Representation.status == "queued")
        .values(
            status="cancelled", phase="cancelled", finished_at=now, error="cancelled by request"
        )
    )
    session.execute(
        update(Representation)
        .where(Representation.id == job_id, Representation.status == "running")
        .values(cancel_requested=True)
    )


def queued_representations(session: Session) -> list[tuple[int, int]]:
    """(job id, project id) of every queued job, oldest first."""
    rows = session.execute(
        select(Representation.id, Representation.project_id)
        .where(Representation.status == "queued")
        .order_by(Representation.id)
    )
    return [(int(job_id), int(project_id)) for job_id, project_id in rows]


def claim_representation(
    session: Session, *, worker: str, now: datetime, project_ids: Sequence[int] | None = None
) -> int | None:
    """Mark the oldest queued job (of `project_ids`, when given) running for `worker`; its id.

    One UPDATE whose WHERE re-checks status='queued', as for rounds: of two racing workers only
    the first changes the row.
    """
    queued = select(Representation.id).where(Representation.status == "queued")
    if project_ids is not None:
        if not project_ids:
            return None
        queued = queued.where(Representation.project_id.in_(list(project_ids)))
    oldest = queued.order_by(Representation.id).limit(1).scalar_subquery()
    claimed = session.execute(
        update(Representation)
        .where(Representation.id == oldest, Representation.status == "queued")
        .values(
            status="running",
            phase="starting",
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            attempts=Representation.attempts + 1,
        )
        .returning(Representation.id)
    ).scalar()
    return int(claimed) if claimed is not None else None


def heartbeat(
    session: Session,
    job_id: int,
    *,
    worker: str,
    now: datetime,
    phase: str | None = None,
    progress: float | None = None,
    detail: dict[str, Any] | None = None,
) -> tuple[bool, bool]:
    """Liveness (and progress) of a running job owned by `worker`: (still ours, cancel asked)."""
    values: dict[str, Any] = {"heartbeat_at": now}
    if phase is not None:
        values["phase"] = phase
    if progress is not None:
        values["progress"] = progress
    if detail is not None:
        values["detail"] = detail
    row = session.execute(
        update(Representation)
        .where(
            Representation.id == job_id,
            Representation.status == "running",
            Representation.worker == worker,
        )
        .values(**values)
        .returning(Representation.cancel_requested)
    ).first()
    if row is None:
        return False, False
    return True, bool(row[0])


def set_running_fields(session: Session, job_id: int, *, worker: str, **values: Any) -> bool:
    """Update columns of a running job this worker owns; False when it is no longer ours."""
    result = session.execute(
        update(Representation)
        .where(
            Representation.id == job_id,
            Representation.status == "running",
            Representation.worker == worker,
        )
        .values(**values)
    )
    return bool(result.rowcount)


def finish_representation(
    session: Session,
    job_id: int,
    *,
    worker: str | None,
    status: str,
    now: datetime,
    error: str | None = None,
    **values: Any,
) -> bool:
    """Move a running job to a final status (only if still running, and ours when given)."""
    conditions = [Representation.id == job_id, Representation.status == "running"]
    if worker is not None:
        conditions.append(Representation.worker == worker)
    result = session.execute(
        update(Representation)
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


def stale_representations(
    session: Session, *, older_than: datetime, project_id: int | None = None
) -> list[tuple[int, int, int]]:
    """(job id, project id, attempts) of running jobs with no heartbeat since `older_than`."""
    conditions = [
        Representation.status == "running",
        (Representation.heartbeat_at < older_than) | Representation.heartbeat_at.is_(None),
    ]
    if project_id is not None:
        conditions.append(Representation.project_id == project_id)
    rows = session.execute(
        select(Representation.id, Representation.project_id, Representation.attempts).where(
            *conditions
        )
    )
    return [(int(i), int(p), int(a)) for i, p, a in rows]


def requeue_representation(
    session: Session, job_id: int, *, note: str, worker: str | None = None
) -> bool:
    """Put a running job (of `worker`, when given) back in the queue: its worker died or was
    stopped. Its progress starts over."""
    conditions = [Representation.id == job_id, Representation.status == "running"]
    if worker is not None:
        conditions.append(Representation.worker == worker)
    result = session.execute(
        update(Representation)
        .where(*conditions)
        .values(
            status="queued",
            phase="queued",
            progress=0.0,
            detail={"requeued": note},
            worker=None,
            started_at=None,
            heartbeat_at=None,
            cancel_requested=False,
        )
    )
    return bool(result.rowcount)


def project_samples(session: Session, project_id: int) -> list[tuple[int, str, int, int]]:
    """(sample id, split, cache shard, cache index) of every sample of the project, by id."""
    rows = session.execute(
        select(Sample.id, Sample.split, Sample.cache_shard, Sample.cache_index)
        .where(Sample.project_id == project_id)
        .order_by(Sample.id)
    )
    return [(int(i), str(s), int(sh), int(ix)) for i, s, sh, ix in rows]


def count_pool_samples(session: Session, project_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Sample)
            .where(Sample.project_id == project_id, Sample.split == "pool")
        )
        or 0
    )


def set_typical_order(session: Session, project_id: int, picks: list[tuple[int, str]]) -> None:
    """Replace the project's TypiClust cold-start order: picks are (sample id, reason), first
    served first."""
    session.execute(
        update(Sample)
        .where(Sample.project_id == project_id, Sample.typical_rank.is_not(None))
        .values(typical_rank=None, typical_reason=None)
    )
    if picks:
        table = Sample.__table__  # Core: an executemany UPDATE with its own WHERE
        session.execute(
            update(table)
            .where(table.c.id == bindparam("sid"))
            .values(typical_rank=bindparam("rank"), typical_reason=bindparam("why")),
            [{"sid": sid, "rank": rank, "why": why} for rank, (sid, why) in enumerate(picks, 1)],
        )
