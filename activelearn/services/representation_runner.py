"""The worker's side of a representation job: claim it, load the pool's pixels, fit the
representation (core.representation.build_features: HOG by default, an SSL encoder or a local
torchvision backbone by the `backbone` setting) with heartbeats and progress, embed every
sample, store the embeddings once per sample, and flip the job to succeeded in one transaction.

The representation is fitted on the project's pool images only: eval (audit) and imported test
samples are embedded with it but never fitted on, so evaluation stays honest. Until the flip,
readers keep the previous version (services.representation.current_embeddings reads the newest
succeeded job); a job that does not succeed removes every file it wrote.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from activelearn import paths
from activelearn.clock import utcnow
from activelearn.core.representation import RepresentationCancelled, RepresentationProgress
from activelearn.ingest.cache import TensorCache
from activelearn.ingest.embeddings import EmbeddingStore
from activelearn.services.cache_rebuild import load_pixels
from activelearn.services.cold_start import store_typical_order
from activelearn.services.features import compute_features, embedding_device, representation_config
from activelearn.services.jobs import (
    HEARTBEAT_S,
    JobMonitor,
    finish_succeeded,
    finish_unsuccessful,
    one_line,
)
from activelearn.services.pipeline import needs_features
from activelearn.services.representation import (
    maybe_request_representation,
    prune_versions,
    remove_job_files,
    version_prefix,
)
from activelearn.services.settings import SSL_BACKBONE, ProjectSettings
from activelearn.types import RoundStatus, SampleSplit
from db import jobs as job_queries
from db import queries
from db import representations as rep_queries
from db.engine import read_session, with_write_retry
from db.models import Representation

log = logging.getLogger("activelearn.worker")
# Shares of the job's progress bar: loading, then training, then embedding and saving.
LOADING_SHARE, TRAINING_SHARE = 0.05, 0.85


class JobCancelled(Exception):
    """Someone cancelled the running job (raised out of the training hooks)."""


class JobLost(Exception):
    """The job stopped being ours (reaped as stale, or finished elsewhere): stop quietly."""


def uses_embeddings(settings: ProjectSettings) -> bool:
    """Whether the project's rounds read the embeddings (its learner or its strategy does):
    then its representation job goes before its rounds."""
    try:
        return needs_features(settings)
    except ValueError:  # an unknown learner fails its round; it needs no embeddings first
        return False


def claim_representation(
    engine: Engine,
    *,
    worker: str,
    project_id: int | None = None,
    before_rounds: bool = False,
) -> int | None:
    """Take the oldest queued job (of `project_id`, when given; with `before_rounds`, only of
    projects whose rounds use embeddings) for `worker`; its id, or None."""
    with read_session(engine) as session:
        # An idle worker polls every second: only a queued job is worth the write lock.
        queued = rep_queries.queued_representations(session)
        owners = sorted({owner for _, owner in queued})
        if project_id is not None:
            owners = [owner for owner in owners if owner == project_id]
        if before_rounds:
            owners = [owner for owner in owners if _project_uses_embeddings(session, owner)]
    if not owners:
        return None
    return with_write_retry(
        engine,
        lambda s: rep_queries.claim_representation(
            s, worker=worker, now=utcnow(), project_ids=owners
        ),
    )


def _project_uses_embeddings(session: Any, project_id: int) -> bool:
    row = queries.get_project_by_id(session, project_id)
    return row is not None and uses_embeddings(ProjectSettings.from_json(row.settings))


# ---------------------------------------------------------------- heartbeat


class RepresentationMonitor(JobMonitor):
    """Heartbeat thread of a running representation job (see JobMonitor); the training
    thread's hooks raise JobCancelled or JobLost once it has seen either."""

    model = Representation
    noun = "representation job"
    cancelled_error = JobCancelled
    lost_error = JobLost
    thread_prefix = "ssl-heartbeat"

    def __init__(self, engine: Engine, job_id: int, *, worker: str, interval: float) -> None:
        super().__init__(engine, job_id, worker=worker, interval=interval)
        self._phase, self._progress, self._dirty = "loading", 0.0, True

    def update(self, phase: str, progress: float, **detail: Any) -> None:
        self.check()
        with self._lock:
            self._phase, self._progress = phase, progress
            self._detail.update(detail)  # a job's detail accumulates over its phases
            self._dirty = True


# ---------------------------------------------------------------- the job


@dataclass(frozen=True)
class _Snapshot:
    project_id: int
    attempt: int  # this claim's number: the job's files carry it (a lost claim removes its own)
    settings: ProjectSettings
    samples: list[tuple[int, str, int, int]]  # (id, split, shard, index), every split


def _snapshot(engine: Engine, job_id: int) -> _Snapshot:
    with read_session(engine) as session:
        row = rep_queries.get_representation(session, job_id)
        if row is None:
            raise RuntimeError(f"representation job {job_id} no longer exists")
        project = queries.get_project_by_id(session, row.project_id)
        if project is None:
            raise RuntimeError(f"the project of representation job {job_id} no longer exists")
        return _Snapshot(
            project_id=project.id,
            attempt=int(row.attempts or 0),
            settings=ProjectSettings.from_json(project.settings),
            samples=rep_queries.project_samples(session, project.id),
        )


def _version(features: np.ndarray, settings: ProjectSettings, job_id: int, attempt: int) -> str:
    """{prefix}{hash}: names what made the vectors (the backbone and the vectors themselves)."""
    digest = hashlib.sha256(settings.backbone.encode())
    digest.update(np.ascontiguousarray(features).tobytes())
    return f"{version_prefix(job_id, attempt)}{digest.hexdigest()[:12]}"


def run_representation(
    engine: Engine, job_id: int, *, data_dir: Path, worker: str, device: str = "auto"
) -> str:
    """Run a job this worker has claimed; returns its final status ("lost" when it stopped
    being ours). Never raises for a failing job: the row says why, the traceback goes to the
    log and its files are removed. KeyboardInterrupt / SystemExit mark it, then propagate."""
    monitor = RepresentationMonitor(engine, job_id, worker=worker, interval=HEARTBEAT_S).start()
    project_id: int | None = None
    attempt: int | None = None
    try:
        started = time.perf_counter()
        snap = _snapshot(engine, job_id)
        project_id, attempt = snap.project_id, snap.attempt
        status = _run(
            engine, job_id, snap, monitor, data_dir=data_dir, worker=worker, device=device
        )
        log.info(
            "representation job %s %s in %.1f s", job_id, status, time.perf_counter() - started
        )
        if status == RoundStatus.SUCCEEDED:
            _after_success(engine, data_dir, snap.project_id)
        return status
    except (JobCancelled, RepresentationCancelled) as error:
        monitor.stop()
        if monitor.lost.is_set():
            return _lost(job_id, data_dir, project_id, attempt)
        reason = "cancelled by request" if monitor.cancelled.is_set() else one_line(error)
        _finish_unsuccessful(engine, job_id, worker, RoundStatus.CANCELLED, reason)
        _remove(data_dir, project_id, job_id, attempt)
        return RoundStatus.CANCELLED
    except JobLost:
        monitor.stop()
        return _lost(job_id, data_dir, project_id, attempt)
    except KeyboardInterrupt:
        monitor.stop()
        _finish_unsuccessful(
            engine, job_id, worker, RoundStatus.CANCELLED, "cancelled (interrupted)"
        )
        _remove(data_dir, project_id, job_id, attempt)
        raise
    except SystemExit:
        # The worker was told to stop (SIGTERM): not the job's fault, so it goes back in the
        # queue for the next worker, without what this claim wrote.
        monitor.stop()
        _requeue(engine, job_id, worker, "the worker was stopped")
        _remove(data_dir, project_id, job_id, attempt)
        raise
    except BaseException as error:
        monitor.stop()
        log.exception("representation job %s failed", job_id)
        _finish_unsuccessful(engine, job_id, worker, RoundStatus.FAILED, one_line(error))
        _remove(data_dir, project_id, job_id, attempt)
        if not isinstance(error, Exception):
            raise
        return RoundStatus.FAILED
    finally:
        monitor.stop()


def _run(
    engine: Engine,
    job_id: int,
    snap: _Snapshot,
    monitor: RepresentationMonitor,
    *,
    data_dir: Path,
    worker: str,
    device: str,
) -> str:
    settings = snap.settings
    monitor.update("loading", 0.0)
    cache = TensorCache(
        paths.project_cache_dir(data_dir, snap.project_id),
        channels=settings.channels,
        image_size=settings.image_size,
    )

    def rebuilding(done: int, total: int) -> None:
        monitor.update("rebuilding cache", 0.0, rebuilt=done, of=total)

    images = load_pixels(
        engine, snap.project_id, cache, [(s[2], s[3]) for s in snap.samples], progress=rebuilding
    )  # (N, C, S, S) uint8, every split
    pool = np.array([s[1] == SampleSplit.POOL for s in snap.samples], dtype=bool)  # (N,)
    n_pool = int(pool.sum())
    epochs = settings.ssl_epochs if settings.backbone == SSL_BACKBONE else 0
    monitor.update("fitting", LOADING_SHARE, n_images=n_pool, n_samples=len(pool), epochs=epochs)
    with_write_retry(
        engine,
        lambda s: job_queries.set_running_fields(
            s, Representation, job_id, worker=worker, n_images=n_pool, detail=monitor.detail()
        ),
    )

    def progress(p: RepresentationProgress) -> None:
        monitor.update(
            "training",
            LOADING_SHARE + TRAINING_SHARE * p.epoch / p.epochs,
            epoch=p.epoch,
            epochs=p.epochs,
            loss=round(p.loss, 4),
            images_per_second=round(p.images_per_second, 1),
        )

    train_started = time.perf_counter()
    features, fitted = compute_features(
        images,
        pool=pool,
        settings=settings,
        device=device,
        progress=progress,
        should_stop=monitor.should_stop,
    )  # (N, D), fitted on the pool images only
    train_seconds = time.perf_counter() - train_started
    monitor.check()
    monitor.update("saving", 0.97, dim=int(features.shape[1]))
    version = _version(features, settings, job_id, snap.attempt)
    store = EmbeddingStore(paths.embeddings_dir(data_dir, snap.project_id))
    ids = np.array([s[0] for s in snap.samples], dtype=np.int64)
    target = store.write(version, ids, features)
    if fitted is not None:
        fitted.save(paths.encoder_file(data_dir, snap.project_id, version))
    monitor.check()
    monitor.stop()
    detail = {
        **monitor.detail(),
        "train_seconds": round(train_seconds, 2),
        "backbone": settings.backbone,
        "backbone_weights": settings.backbone_weights,
        **(
            {"augment": representation_config(settings).augment.to_json()}
            if settings.backbone == SSL_BACKBONE
            else {}
        ),
        "losses": (
            [round(x, 4) for x in fitted.encoder.losses]
            if fitted is not None and fitted.encoder is not None
            else []
        ),
    }

    def flip(session: Any) -> str:
        return finish_succeeded(
            session,
            Representation,
            job_id,
            worker=worker,
            detail=detail,
            version=version,
            path=str(target.resolve()),
            n_images=n_pool,
            n_embedded=len(ids),
            device=embedding_device(device) if settings.backbone != "hog" else "cpu",
        )

    outcome = with_write_retry(engine, flip)
    if outcome == RoundStatus.SUCCEEDED:
        return outcome
    if outcome == "lost":
        raise JobLost("representation job finished elsewhere")
    monitor.cancelled.set()
    raise JobCancelled("cancelled by request")


def _after_success(engine: Engine, data_dir: Path, project_id: int) -> None:
    """Old versions' files go, the cold start's typical picks are written from the new
    embeddings, and a pool that grew while the job trained queues the next job."""
    try:
        prune_versions(engine, data_dir, project_id)
        store_typical_order(engine, data_dir, project_id)
        maybe_request_representation(engine, project_id)
    except Exception:
        log.exception("after representation of project %s", project_id)


def _lost(job_id: int, data_dir: Path, project_id: int | None, attempt: int | None) -> str:
    log.warning("representation job %s was taken from this worker (stale heartbeat?)", job_id)
    _remove(data_dir, project_id, job_id, attempt)
    return "lost"


def _remove(data_dir: Path, project_id: int | None, job_id: int, attempt: int | None) -> None:
    """This claim's files only: after a reap another worker may be writing the job's next try."""
    if project_id is None or attempt is None:
        return
    try:
        remove_job_files(data_dir, project_id, job_id, attempt=attempt)
    except Exception:
        log.exception("could not remove the files of representation job %s", job_id)


def _requeue(engine: Engine, job_id: int, worker: str, why: str) -> None:
    try:
        with_write_retry(
            engine,
            lambda s: rep_queries.requeue_representation(s, job_id, note=why, worker=worker),
        )
    except Exception:
        log.exception("could not put representation job %s back in the queue", job_id)
    log.info("representation job %s back in the queue: %s", job_id, why)


def _finish_unsuccessful(engine: Engine, job_id: int, worker: str, status: str, error: str) -> None:
    finish_unsuccessful(
        engine,
        Representation,
        job_id,
        noun=RepresentationMonitor.noun,
        worker=worker,
        status=status,
        error=error,
    )
    log.info("representation job %s %s: %s", job_id, status, error)
