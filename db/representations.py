"""Query functions for representation jobs (a project's self-supervised encoder and embeddings).

Every function takes a Session and never commits. The embeddings themselves live in array
files under the data folder; a row names its file and encoder version once it has succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from db import jobs
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
    """Mark the oldest queued job (of `project_ids`, when given) running for `worker` and count
    the claim in `attempts`; its id (one UPDATE: of two racing workers one wins, see
    db.jobs.claim)."""
    if project_ids is not None and not project_ids:
        return None
    only = [Representation.project_id.in_(list(project_ids))] if project_ids is not None else []
    attempts = Representation.attempts + 1
    return jobs.claim(
        session, Representation, worker=worker, now=now, where=only, attempts=attempts
    )


def stale_representations(
    session: Session, *, older_than: datetime, project_id: int | None = None
) -> list[tuple[int, int, int]]:
    """(job id, project id, attempts) of running jobs with no heartbeat since `older_than`."""
    columns = (Representation.id, Representation.project_id, Representation.attempts)
    rows = jobs.stale(
        session, Representation, *columns, older_than=older_than, project_id=project_id
    )
    return [(int(i), int(p), int(a)) for i, p, a in rows]


def requeue_representation(
    session: Session, job_id: int, *, note: str, worker: str | None = None
) -> bool:
    """Put a running job (of `worker`, when given) back in the queue: its worker died or was
    stopped. Its progress starts over."""
    result = session.execute(
        update(Representation)
        .where(*jobs.running(Representation, job_id, worker))
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
