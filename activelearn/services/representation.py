"""The representation stage, queue side: request, cancel, reap and read a project's
self-supervised representation jobs, and the embeddings the newest succeeded one stored.

A job is run by the background worker (services.representation_runner) like a round: claimed,
heartbeated, cancellable, and flipped to succeeded in one transaction, so readers switch from
one encoder version to the next atomically. A job whose worker died is put back in the queue
(up to MAX_ATTEMPTS claims) and whatever it had half written is removed. This module stays
free of torch: the import path and the UI read embeddings with numpy only.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from activelearn import paths
from activelearn.clock import utcnow
from activelearn.ingest.embeddings import EmbeddingsMissing, EmbeddingStore
from activelearn.services.jobs import DEFAULT_HEARTBEAT_TIMEOUT_S, cancel, reap_stale
from activelearn.services.settings import SSL_BACKBONE, ProjectSettings
from activelearn.types import RepresentationInfo, RepresentationStatus
from db import jobs as job_queries
from db import queries
from db import representations as rep_queries
from db.engine import read_session, with_write_retry
from db.models import Representation

if TYPE_CHECKING:
    from activelearn.services.project import Project

log = logging.getLogger("activelearn.worker")
MAX_ATTEMPTS = 3  # a job whose worker died this many times fails instead of going back
MIN_POOL_IMAGES = 2  # contrastive training needs two images to contrast


def representation_info(row: Representation) -> RepresentationInfo:
    return RepresentationInfo(
        id=row.id,
        status=row.status,
        phase=row.phase,
        progress=float(row.progress or 0.0),
        detail=dict(row.detail or {}),
        version=row.version,
        n_images=int(row.n_images or 0),
        n_embedded=int(row.n_embedded or 0),
        device=row.device,
        error=row.error,
        requested_by=row.requested_by,
        created_at=row.created_at,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        finished_at=row.finished_at,
    )


def version_prefix(job_id: int, attempt: int) -> str:
    """Every file of claim `attempt` of job `job_id` starts with this (its version is this
    plus a hash of the encoder's weights)."""
    return f"ssl{job_id}a{attempt}-"


# ---------------------------------------------------------------- requests


def _features(settings: ProjectSettings) -> tuple[str, str, int]:
    """What a representation's features depend on among the settings."""
    epochs = settings.ssl_epochs if settings.backbone == SSL_BACKBONE else 0
    return settings.backbone, settings.backbone_weights, epochs


def features_changed(old: ProjectSettings, new: ProjectSettings) -> bool:
    """Whether embeddings computed under `old` are not what `new` asks for."""
    return _features(old) != _features(new)


def _made_with_other_features(detail: dict, settings: ProjectSettings) -> bool:
    """A job's recorded backbone, weights and epochs differ from the settings' (jobs from
    before they were recorded count as matching)."""
    if "backbone" not in detail:
        return False
    made = (detail["backbone"], detail.get("backbone_weights", ""), int(detail.get("epochs", 0)))
    return made != _features(settings)


def request_representation(
    project: Project,
    *,
    requested_by: str | None = None,
    stale_after_s: float | None = None,
) -> RepresentationInfo:
    """Queue a representation job; if one is queued or running already, return that one."""
    reap_stale_representations(
        project.engine,
        timeout_s=stale_after_s,
        data_dir=project.workspace.data_dir,
        project_id=project.id,
    )
    return _request(project.engine, project.id, requested_by=requested_by)


def _request(engine: Engine, project_id: int, *, requested_by: str | None) -> RepresentationInfo:
    def work(session: Session) -> RepresentationInfo:
        active = rep_queries.active_representation(session, project_id)
        if active is not None:
            return representation_info(active)
        created = rep_queries.add_representation(
            session, project_id=project_id, requested_by=requested_by, now=utcnow()
        )
        return representation_info(created)

    try:
        return with_write_retry(engine, work)
    except IntegrityError:
        # The one-active-job index caught a concurrent request: return the winner.
        with read_session(engine) as session:
            active = rep_queries.active_representation(session, project_id)
            assert active is not None
            return representation_info(active)


def maybe_request_representation(
    engine: Engine, project_id: int, *, requested_by: str = "auto"
) -> RepresentationInfo | None:
    """Queue a job when the project has none yet, or when its pool has grown by the
    `representation_regrow` share since the newest succeeded one; the job queued, or None.

    Called after every import and after a job succeeds (the pool may have grown meanwhile).
    One read transaction; a write only when a job is due.
    """
    with read_session(engine) as session:
        row = queries.get_project_by_id(session, project_id)
        if row is None or rep_queries.active_representation(session, project_id) is not None:
            return None
        settings = ProjectSettings.from_json(row.settings)
        regrow = settings.representation_regrow
        pool = rep_queries.count_pool_samples(session, project_id)
        served = rep_queries.succeeded_representations(session, project_id)
    if pool < MIN_POOL_IMAGES:
        return None
    if served and _made_with_other_features(served[0].detail or {}, settings):
        # the features were changed while this job ran on the old ones
        return _request(engine, project_id, requested_by="settings")
    if served:
        trained_on = served[0].n_images
        if regrow <= 0 or pool - trained_on < regrow * max(trained_on, 1):
            return None
    return _request(engine, project_id, requested_by=requested_by)


def after_import(project: Project) -> RepresentationInfo | None:
    """Hook at the end of every import; a failure here never fails the import (it is stored)."""
    try:
        return maybe_request_representation(project.engine, project.id)
    except Exception:
        log.exception("automatic representation request failed for project %s", project.name)
        return None


def cancel_representation(project: Project, job_id: int | None = None) -> RepresentationInfo | None:
    """Cancel the project's active job (or job `job_id`): a queued one at once, a running one
    when its worker next looks (within a training step)."""

    return cancel(
        project.engine,
        Representation,
        project.id,
        job_id,
        active=rep_queries.active_representation,
        info=representation_info,
    )


# ---------------------------------------------------------------- dead workers


def reap_stale_representations(
    engine: Engine,
    *,
    timeout_s: float | None = None,
    data_dir: Path | None = None,
    project_id: int | None = None,
) -> list[int]:
    """Put running jobs whose worker stopped heartbeating for timeout_s back in the queue (or
    fail them after MAX_ATTEMPTS claims) and remove the files they had half written; their ids.
    """
    timeout = DEFAULT_HEARTBEAT_TIMEOUT_S if timeout_s is None else timeout_s
    message = f"worker stopped responding (no heartbeat for {timeout:g} s)"

    def requeue_or_fail(
        session: Session, older_than: datetime, now: datetime
    ) -> list[tuple[int, int, int]]:
        reaped = []
        for job_id, owner, attempt in rep_queries.stale_representations(
            session, older_than=older_than, project_id=project_id
        ):
            if attempt < MAX_ATTEMPTS:
                rep_queries.requeue_representation(session, job_id, note=message)
            else:
                job_queries.finish(
                    session,
                    Representation,
                    job_id,
                    worker=None,
                    status="failed",
                    now=now,
                    error=f"{message}; gave up after {attempt} attempts",
                )
            reaped.append((job_id, owner, attempt))
        return reaped

    reaped = reap_stale(
        engine, Representation, timeout_s=timeout, project_id=project_id, reap=requeue_or_fail
    )
    for job_id, owner, attempt in reaped:
        log.warning("representation job %s: %s; re-queued or failed", job_id, message)
        if data_dir is not None:
            remove_job_files(Path(data_dir), owner, job_id, attempt=attempt)
    return [job_id for job_id, _, _ in reaped]


def remove_job_files(data_dir: Path, project_id: int, job_id: int, *, attempt: int) -> None:
    """Delete every file claim `attempt` of a job that did not succeed wrote (temporary or
    published)."""
    folder = paths.embeddings_dir(data_dir, project_id)
    prefix = version_prefix(job_id, attempt)
    for pattern in (f"{prefix}*", f".{prefix}*"):  # published files, and EmbeddingStore temps
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


def prune_versions(engine: Engine, data_dir: Path, project_id: int, *, keep: int = 2) -> None:
    """Delete the files of succeeded versions older than the newest `keep`: the previous one
    stays for a round that started before the switch and still reads it."""
    with read_session(engine) as session:
        served = rep_queries.succeeded_representations(session, project_id)
    kept = {row.version for row in served[:keep] if row.version}
    folder = paths.embeddings_dir(data_dir, project_id)
    for row in served[keep:]:
        if row.version and row.version not in kept:
            for path in folder.glob(f"{row.version}.*"):
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------- reading


def representation_status(project: Project) -> RepresentationStatus:
    with read_session(project.engine) as session:
        served = rep_queries.succeeded_representations(session, project.id)
        latest = rep_queries.latest_representation(session, project.id)
        return RepresentationStatus(
            current=representation_info(served[0]) if served else None,
            latest=representation_info(latest) if latest is not None else None,
        )


def list_representations(project: Project) -> list[RepresentationInfo]:
    with read_session(project.engine) as session:
        rows = rep_queries.list_representations(session, project.id)
        return [representation_info(row) for row in rows]


def current_embeddings(
    engine: Engine, data_dir: Path, project_id: int
) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(version, (N,) sorted sample ids, (N, D) float32) of the newest succeeded job, or None.

    Older succeeded versions are tried when the newest one's file is gone (e.g. removed by hand).
    """
    with read_session(engine) as session:
        versions = [
            row.version
            for row in rep_queries.succeeded_representations(session, project_id)
            if row.version
        ]
    store = EmbeddingStore(paths.embeddings_dir(data_dir, project_id))
    for version in versions:
        try:
            ids, vectors = store.load_all(version)
        except EmbeddingsMissing:
            log.warning("embeddings of version %s are missing on disk", version)
            continue
        return version, ids, vectors
    return None


def embeddings(project: Project) -> tuple[np.ndarray, np.ndarray] | None:
    """((N,) sample ids, (N, D) float32 embeddings) of the current version, or None."""
    found = current_embeddings(project.engine, project.workspace.data_dir, project.id)
    return None if found is None else (found[1], found[2])
