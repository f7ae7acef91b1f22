"""Query functions for projects, samples, the labeling queue and labels.

Every function takes a Session and never commits: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from db.models import (
    AcquisitionEntry,
    Annotation,
    Lease,
    Project,
    Round,
    Sample,
    SampleScore,
)

# ---------------------------------------------------------------- projects


def get_project(session: Session, name: str) -> Project | None:
    return session.scalars(select(Project).where(Project.name == name)).one_or_none()


def get_project_by_id(session: Session, project_id: int) -> Project | None:
    return session.get(Project, project_id)


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))


def add_project(
    session: Session, *, name: str, classes: list[str], settings: dict[str, Any], now: datetime
) -> Project:
    project = Project(name=name, classes=classes, settings=settings, created_at=now)
    session.add(project)
    session.flush()
    return project


def update_project(
    session: Session,
    project_id: int,
    *,
    classes: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {}
    if classes is not None:
        values["classes"] = classes
    if settings is not None:
        values["settings"] = settings
    if values:
        session.execute(update(Project).where(Project.id == project_id).values(**values))


# ---------------------------------------------------------------- samples


def existing_hashes(session: Session, project_id: int, hashes: Iterable[str]) -> set[str]:
    wanted = list(set(hashes))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update(
            session.scalars(
                select(Sample.sha256).where(
                    Sample.project_id == project_id, Sample.sha256.in_(chunk)
                )
            )
        )
    return found


def samples_by_hash(
    session: Session, project_id: int, hashes: Iterable[str]
) -> dict[str, tuple[str | None, str | None, str]]:
    """sha256 -> (current label, original name, path) of the project's samples with those hashes."""
    wanted = list(set(hashes))
    found: dict[str, tuple[str | None, str | None, str]] = {}
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(Sample.sha256, Sample.label, Sample.original_name, Sample.path).where(
                Sample.project_id == project_id, Sample.sha256.in_(wanted[start : start + 500])
            )
        )
        found.update({sha: (label, name, path) for sha, label, name, path in rows})
    return found


def original_names(session: Session, sample_ids: Sequence[int]) -> dict[int, str | None]:
    """sample id -> original name (None when it was not recorded)."""
    found: dict[int, str | None] = {}
    ids = list(sample_ids)
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(Sample.id, Sample.original_name).where(Sample.id.in_(ids[start : start + 500]))
        )
        found.update({int(sample_id): name for sample_id, name in rows})
    return found


def sample_ids_by_hash(session: Session, project_id: int, hashes: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(hashes), 500):
        chunk = list(hashes[start : start + 500])
        rows = session.execute(
            select(Sample.sha256, Sample.id).where(
                Sample.project_id == project_id, Sample.sha256.in_(chunk)
            )
        )
        found.update({sha: int(sample_id) for sha, sample_id in rows})
    return found


def insert_samples(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(Sample), list(rows))


def get_sample(session: Session, sample_id: int) -> Sample | None:
    return session.get(Sample, sample_id)


def sample_counts(session: Session, project_id: int) -> dict[tuple[str, str], int]:
    """(split, status) -> count."""
    rows = session.execute(
        select(Sample.split, Sample.status, func.count())
        .where(Sample.project_id == project_id)
        .group_by(Sample.split, Sample.status)
    )
    return {(split, status): int(n) for split, status, n in rows}


def samples_for_training(session: Session, project_id: int, split: str) -> list[tuple[Any, ...]]:
    """(id, label, cache_shard, cache_index) of labeled samples in a split, by id."""
    rows = session.execute(
        select(Sample.id, Sample.label, Sample.cache_shard, Sample.cache_index)
        .where(Sample.project_id == project_id, Sample.split == split, Sample.status == "labeled")
        .order_by(Sample.id)
    )
    return [tuple(row) for row in rows]


def samples_with_gold(session: Session, project_id: int, split: str) -> list[tuple[Any, ...]]:
    """(id, gold_label, cache_shard, cache_index) of samples of a split with a gold label."""
    rows = session.execute(
        select(Sample.id, Sample.gold_label, Sample.cache_shard, Sample.cache_index)
        .where(
            Sample.project_id == project_id,
            Sample.split == split,
            Sample.gold_label.is_not(None),
        )
        .order_by(Sample.id)
    )
    return [tuple(row) for row in rows]


def labeled_pool_classes(session: Session, project_id: int) -> list[str]:
    """The distinct labels of labeled pool samples (what a round would train on)."""
    return sorted(
        session.scalars(
            select(Sample.label)
            .where(
                Sample.project_id == project_id,
                Sample.split == "pool",
                Sample.status == "labeled",
            )
            .distinct()
        )
    )


def round_strategy(session: Session, round_id: int) -> str | None:
    """The strategy a round ranked its pool by (its settings when it started)."""
    return session.scalar(select(Round.strategy).where(Round.id == round_id))


def samples_in_shard(
    session: Session, project_id: int, shard_id: int
) -> list[tuple[int, str, str]]:
    """(cache_index, path, sha256) of the samples whose pixels live in one cache shard."""
    rows = session.execute(
        select(Sample.cache_index, Sample.path, Sample.sha256)
        .where(Sample.project_id == project_id, Sample.cache_shard == shard_id)
        .order_by(Sample.cache_index)
    )
    return [(int(i), str(p), str(h)) for i, p, h in rows]


def unlabeled_pool(session: Session, project_id: int) -> list[tuple[int, int, int]]:
    """(id, cache_shard, cache_index) of every open pool sample, by id."""
    rows = session.execute(
        select(Sample.id, Sample.cache_shard, Sample.cache_index)
        .where(Sample.project_id == project_id, Sample.split == "pool", Sample.status == "open")
        .order_by(Sample.id)
    )
    return [(int(a), int(b), int(c)) for a, b, c in rows]


# ---------------------------------------------------------------- the queue


@dataclass(frozen=True)
class Candidate:
    sample_id: int
    score: float | None
    rank: int | None


def _not_leased(now: datetime) -> Any:
    return ~exists().where(Lease.sample_id == Sample.id, Lease.expires_at > now)


def _lock(query: Select[Any]) -> Select[Any]:
    # Row locks on PostgreSQL (SKIP LOCKED lets concurrent claims pass each other);
    # SQLite ignores this and is serialised by BEGIN IMMEDIATE instead.
    return query.with_for_update(skip_locked=True, of=Sample)


def find_scored_candidate(
    session: Session, project_id: int, round_id: int, now: datetime, *, skipped: bool
) -> Candidate | None:
    """The highest-priority open, unleased pool sample in a round's ranking."""
    query = (
        select(SampleScore.sample_id, SampleScore.priority, SampleScore.rank)
        .join(Sample, Sample.id == SampleScore.sample_id)
        .where(
            SampleScore.round_id == round_id,
            Sample.project_id == project_id,
            Sample.split == "pool",
            Sample.status == "open",
            (Sample.skip_count > 0) if skipped else (Sample.skip_count == 0),
            _not_leased(now),
        )
        .limit(1)
    )
    if skipped:
        query = query.order_by(Sample.skip_count, SampleScore.priority.desc())
    else:
        query = query.order_by(SampleScore.priority.desc())
    row = session.execute(_lock(query)).first()
    return Candidate(int(row[0]), float(row[1]), row[2]) if row else None


def find_random_candidate(
    session: Session,
    project_id: int,
    now: datetime,
    *,
    skipped: bool,
    unscored_in_round: int | None = None,
    typical: bool = False,
) -> Candidate | None:
    """The next open, unleased pool sample in the random cold-start order.

    With unscored_in_round, only samples that round did not score (imported after it); with
    typical, only TypiClust's cold-start picks, in their order (typical_rank).
    """
    query = select(Sample.id).where(
        Sample.project_id == project_id,
        Sample.split == "pool",
        Sample.status == "open",
        (Sample.skip_count > 0) if skipped else (Sample.skip_count == 0),
        _not_leased(now),
    )
    if unscored_in_round is not None:
        query = query.where(
            ~exists().where(
                SampleScore.round_id == unscored_in_round, SampleScore.sample_id == Sample.id
            )
        )
    key = Sample.typical_rank if typical else Sample.random_key
    if typical:
        query = query.where(Sample.typical_rank.is_not(None))
    order = (Sample.skip_count, key) if skipped else (key,)
    sample_id = session.execute(_lock(query.order_by(*order).limit(1))).scalar()
    return Candidate(int(sample_id), None, None) if sample_id is not None else None


def lease_sample(
    session: Session,
    *,
    project_id: int,
    sample_id: int,
    annotator: str,
    round_id: int | None,
    strategy: str,
    score: float | None,
    rank: int | None,
    now: datetime,
    expires_at: datetime,
) -> int:
    """Log the serving and hold the sample for the annotator; returns the task id.

    The leases primary key (one row per sample) is the last guard against a double hold.
    """
    session.execute(delete(Lease).where(Lease.sample_id == sample_id, Lease.expires_at <= now))
    task_id = session.execute(
        insert(AcquisitionEntry)
        .values(
            project_id=project_id,
            sample_id=sample_id,
            annotator=annotator,
            round_id=round_id,
            strategy=strategy,
            score=score,
            rank=rank,
            served_at=now,
            expires_at=expires_at,
        )
        .returning(AcquisitionEntry.id)
    ).scalar_one()
    session.execute(
        insert(Lease).values(
            sample_id=sample_id,
            project_id=project_id,
            task_id=task_id,
            annotator=annotator,
            expires_at=expires_at,
        )
    )
    return int(task_id)


def current_lease(session: Session, project_id: int, annotator: str, now: datetime) -> Lease | None:
    """The annotator's live lease, if any (the most recent)."""
    return session.scalars(
        select(Lease)
        .where(Lease.project_id == project_id, Lease.annotator == annotator, Lease.expires_at > now)
        .order_by(Lease.task_id.desc())
        .limit(1)
    ).first()


def live_leases(session: Session, project_id: int, annotator: str, now: datetime) -> list[Lease]:
    """All of the annotator's live leases, oldest first (grid mode holds several)."""
    return list(
        session.scalars(
            select(Lease)
            .where(
                Lease.project_id == project_id,
                Lease.annotator == annotator,
                Lease.expires_at > now,
            )
            .order_by(Lease.task_id)
        )
    )


def get_task(session: Session, task_id: int) -> AcquisitionEntry | None:
    return session.get(AcquisitionEntry, task_id)


def release_task(session: Session, task_id: int, *, outcome: str, now: datetime) -> None:
    session.execute(delete(Lease).where(Lease.task_id == task_id))
    session.execute(
        update(AcquisitionEntry)
        .where(AcquisitionEntry.id == task_id, AcquisitionEntry.outcome.is_(None))
        .values(outcome=outcome, closed_at=now)
    )


def add_skip(session: Session, sample_id: int) -> None:
    session.execute(
        update(Sample).where(Sample.id == sample_id).values(skip_count=Sample.skip_count + 1)
    )


def score_row(session: Session, round_id: int, sample_id: int) -> SampleScore | None:
    return session.get(SampleScore, (round_id, sample_id))


def latest_succeeded_round_id(session: Session, project_id: int) -> int | None:
    return session.scalar(
        select(func.max(Round.id)).where(
            Round.project_id == project_id, Round.status == "succeeded"
        )
    )


# ---------------------------------------------------------------- labels


def annotation_for_task(session: Session, task_id: int) -> Annotation | None:
    return session.scalars(select(Annotation).where(Annotation.task_id == task_id)).one_or_none()


def add_annotation(
    session: Session,
    *,
    project_id: int,
    sample_id: int,
    task_id: int | None,
    label: str,
    annotator: str,
    now: datetime,
    replaces_id: int | None = None,
) -> int:
    annotation = Annotation(
        project_id=project_id,
        sample_id=sample_id,
        task_id=task_id,
        label=label,
        annotator=annotator,
        created_at=now,
        superseded=False,
        replaces_id=replaces_id,
    )
    session.add(annotation)
    session.flush()
    return annotation.id


def supersede(session: Session, annotation_id: int, now: datetime) -> None:
    session.execute(
        update(Annotation)
        .where(Annotation.id == annotation_id)
        .values(superseded=True, superseded_at=now)
    )


def restore(session: Session, annotation_id: int) -> None:
    """Make a superseded label live again (an undo of the label that replaced it)."""
    session.execute(
        update(Annotation)
        .where(Annotation.id == annotation_id)
        .values(superseded=False, superseded_at=None)
    )


def live_annotation(session: Session, sample_id: int) -> Annotation | None:
    """The sample's one live label (the database allows at most one), if any."""
    return session.scalars(
        select(Annotation).where(
            Annotation.sample_id == sample_id, Annotation.superseded.is_(False)
        )
    ).first()


def get_annotation(session: Session, annotation_id: int) -> Annotation | None:
    return session.get(Annotation, annotation_id)


def lease_of_task(session: Session, task_id: int) -> Lease | None:
    return session.scalars(select(Lease).where(Lease.task_id == task_id)).first()


def lease_of_sample(session: Session, sample_id: int) -> Lease | None:
    return session.get(Lease, sample_id)


def refresh_sample_label(
    session: Session, sample_id: int, *, make_eval: bool = False
) -> str | None:
    """Recompute a sample's current label from its live annotations (the newest wins).

    `make_eval` moves a labeled audit sample to the evaluation split; a sample left with no
    live label leaves the evaluation split again (back to the pool, where it can be served).
    """
    label = session.scalar(
        select(Annotation.label)
        .where(Annotation.sample_id == sample_id, Annotation.superseded.is_(False))
        .order_by(Annotation.id.desc())
        .limit(1)
    )
    # A live rejection outranks labels: the sample stays out until a lead restores it.
    status = case(
        (Sample.status == "rejected", "rejected"), else_="labeled" if label is not None else "open"
    )
    values: dict[str, Any] = {"label": label, "status": status}
    if make_eval:
        values["split"] = "eval"
    elif label is None:
        values["split"] = case((Sample.split == "eval", "pool"), else_=Sample.split)
    session.execute(update(Sample).where(Sample.id == sample_id).values(**values))
    return label


def last_live_annotation(session: Session, project_id: int, annotator: str) -> Annotation | None:
    return session.scalars(
        select(Annotation)
        .where(
            Annotation.project_id == project_id,
            Annotation.annotator == annotator,
            Annotation.superseded.is_(False),
        )
        .order_by(Annotation.id.desc())
        .limit(1)
    ).first()


def live_annotation_of(session: Session, sample_id: int, annotator: str) -> Annotation | None:
    return session.scalars(
        select(Annotation)
        .where(
            Annotation.sample_id == sample_id,
            Annotation.annotator == annotator,
            Annotation.superseded.is_(False),
        )
        .order_by(Annotation.id.desc())
        .limit(1)
    ).first()


def recent_annotations(
    session: Session, project_id: int, annotator: str, limit: int
) -> list[tuple[Any, ...]]:
    """(annotation id, sample id, path, label, created_at, original name) of the annotator's
    newest live labels."""
    rows = session.execute(
        select(
            Annotation.id,
            Annotation.sample_id,
            Sample.path,
            Annotation.label,
            Annotation.created_at,
            Sample.original_name,
        )
        .join(Sample, Sample.id == Annotation.sample_id)
        .where(
            Annotation.project_id == project_id,
            Annotation.annotator == annotator,
            Annotation.superseded.is_(False),
        )
        .order_by(Annotation.id.desc())
        .limit(limit)
    )
    return [tuple(row) for row in rows]


def live_annotations(session: Session, project_id: int) -> list[tuple[Any, ...]]:
    """(sample id, path, label, annotator, created_at, split, original name) of every live
    label, oldest first."""
    rows = session.execute(
        select(
            Annotation.sample_id,
            Sample.path,
            Annotation.label,
            Annotation.annotator,
            Annotation.created_at,
            Sample.split,
            Sample.original_name,
        )
        .join(Sample, Sample.id == Annotation.sample_id)
        .where(Annotation.project_id == project_id, Annotation.superseded.is_(False))
        .order_by(Annotation.id)
    )
    return [tuple(row) for row in rows]


def count_live_annotations(session: Session, project_id: int, *, since_id: int = 0) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Annotation.project_id == project_id,
                Annotation.superseded.is_(False),
                Annotation.id > since_id,
            )
        )
        or 0
    )


def max_annotation_id(session: Session, project_id: int) -> int:
    return int(
        session.scalar(select(func.max(Annotation.id)).where(Annotation.project_id == project_id))
        or 0
    )
