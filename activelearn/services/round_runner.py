"""The worker's side of a round: claim it, snapshot the labels, run the pure pipeline with
progress and heartbeats, store what it produced, and flip the round to succeeded atomically.

The pipeline itself (services.pipeline) never sees the database. Here: the labels are read in
one read transaction, pixels come from the tensor cache, metrics, curves and scores are written
in short write transactions (labels interleave), and one last transaction flips the round to
succeeded; the queue only reads the latest *succeeded* round, so serving switches to the new
ranking at once. Finally the dashboard's pool summary of the round is stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import Engine

from activelearn.clock import utcnow
from activelearn.errors import NotEnoughLabels
from activelearn.ingest.cache import TensorCache
from activelearn.ingest.embeddings import EmbeddingsMissing, EmbeddingStore, select_rows
from activelearn.paths import checkpoint_dir, embeddings_dir, project_cache_dir
from activelearn.services.cache_rebuild import load_pixels
from activelearn.services.dashboard.pool import store_pool_summary
from activelearn.services.honesty import round_honesty
from activelearn.services.jobs import (
    HEARTBEAT_S,
    JobMonitor,
    finish_succeeded,
    finish_unsuccessful,
    one_line,
)
from activelearn.services.pipeline import (
    SAVING_SHARE,
    RoundFailed,
    RoundProgress,
    needs_features,
    train_and_score,
)
from activelearn.services.representation import current_embeddings
from activelearn.services.round_storage import store_metrics, store_scores
from activelearn.services.rounds import check_enough_labels, discard_outputs, prune_old_rounds
from activelearn.services.settings import ProjectSettings
from activelearn.types import RoundStatus, SampleSplit
from db import jobs as job_queries
from db import queries
from db import rounds as round_queries
from db.engine import read_session, with_write_retry
from db.models import Round

log = logging.getLogger("activelearn.worker")


class RoundCancelled(Exception):
    """Raised out of the progress callback when someone cancelled the running round."""


class RoundLost(Exception):
    """The round stopped being ours (reaped as stale, or finished elsewhere): stop quietly."""


def claim_round(engine: Engine, *, worker: str, round_id: int | None = None) -> int | None:
    """Take the oldest queued round (or `round_id`) for `worker`; its id, or None."""
    with read_session(engine) as session:
        # An idle worker polls every second: only a queued round is worth the write lock.
        if not round_queries.has_queued_round(session, round_id):
            return None
    return with_write_retry(
        engine,
        lambda s: round_queries.claim_next_round(s, worker=worker, now=utcnow(), round_id=round_id),
    )


# ---------------------------------------------------------------- the worker's round


class RoundMonitor(JobMonitor):
    """Heartbeat thread of a running round (see JobMonitor). The training thread calls
    `update` with the pipeline's progress, which raises RoundCancelled or RoundLost once the
    monitor has seen either; `set_extra` adds fields of the worker's own to every detail."""

    model = Round
    noun = "round"
    cancelled_error = RoundCancelled
    lost_error = RoundLost

    def __init__(self, engine: Engine, round_id: int, *, worker: str, interval: float) -> None:
        super().__init__(engine, round_id, worker=worker, interval=interval)
        self._extra: dict[str, Any] = {}

    def set_extra(self, **values: Any) -> None:
        """Fields merged into every detail written (watermark, n_labels, timings, ...)."""
        with self._lock:
            self._extra.update(values)
            self._dirty = True

    def update(self, state: RoundProgress) -> None:
        self.check()
        with self._lock:
            # The pipeline's detail replaces the previous one (it says where the round is now).
            self._phase, self._progress, self._detail = state.phase, state.progress, state.detail
            self._dirty = True

    def _written_detail(self) -> dict[str, Any]:
        return {**self._detail, **self._extra}


def _one_line(error: BaseException) -> str:
    return one_line(error, plain=(RoundFailed,))  # RoundFailed says what to do: no type name


@dataclass(frozen=True)
class _Snapshot:
    project_id: int
    classes: list[str]
    settings: ProjectSettings
    watermark: int
    train: list[tuple[Any, ...]]  # (id, label, shard, index)
    eval_rows: list[tuple[Any, ...]]
    eval_source: str | None  # test | audit | None
    pool_open: list[tuple[int, int, int]]  # (id, shard, index)


def _snapshot(engine: Engine, round_id: int) -> _Snapshot:
    """Everything the round trains on, read in one read transaction (one consistent view)."""
    with read_session(engine) as session:
        row = round_queries.get_round(session, round_id)
        if row is None:
            raise RoundFailed(f"round {round_id} no longer exists")
        project = queries.get_project_by_id(session, row.project_id)
        if project is None:
            raise RoundFailed(f"the project of round {round_id} no longer exists")
        # The settings current when the round starts drive it (not those when it was queued:
        # a lead may have changed them meanwhile); _run_round records them on the round.
        settings = ProjectSettings.from_json(project.settings)
        watermark = queries.max_annotation_id(session, project.id)
        train = queries.samples_for_training(session, project.id, SampleSplit.POOL)
        test = queries.samples_with_gold(session, project.id, SampleSplit.TEST)
        if test:
            eval_rows, source = test, "test"
        else:
            audit = queries.samples_for_training(session, project.id, SampleSplit.EVAL)
            eval_rows, source = audit, ("audit" if audit else None)
        return _Snapshot(
            project_id=project.id,
            classes=list(project.classes),
            settings=settings,
            watermark=watermark,
            train=train,
            eval_rows=eval_rows,
            eval_source=source,
            pool_open=queries.unlabeled_pool(session, project.id),
        )


def _check_enough_labels(classes: list[str], train_labels: list[int]) -> None:
    """The labels may have changed since the round was requested: check again at its start."""
    try:
        check_enough_labels(sorted({classes[i] for i in train_labels}))
    except NotEnoughLabels as error:
        raise RoundFailed(str(error)) from error


def load_embeddings(
    engine: Engine, data_dir: Path, project_id: int, sample_ids: list[int]
) -> np.ndarray:
    """(K,) sample ids -> (K, D) float32 embeddings of the version the project serves: its
    newest succeeded representation job's (the switch is that job's flip), else, for a store
    filled outside the stage, its newest published file. RoundFailed (one line) when there are
    none yet or they miss some of the samples. The file is read once (100k x 286 float32 is
    over 100 MB)."""
    store = EmbeddingStore(embeddings_dir(data_dir, project_id))
    found = current_embeddings(engine, data_dir, project_id)
    if found is not None:
        version, ids, vectors = found
    else:
        # The store's glob also lists a write in progress (".<version>-*.npz"): published only.
        versions = [v for v in store.versions() if not v.startswith(".")]
        if not versions:
            raise RoundFailed(
                "the representation stage has not finished yet for this project: rounds with "
                "the embedding learner or the typiclust/auto strategies start once it has "
                "(learner 'cnn' with a probability strategy works meanwhile)"
            )
        version = max(versions, key=lambda v: store.path(v).stat().st_mtime_ns)
        ids, vectors = store.load_all(version)
    try:
        return select_rows(ids, vectors, np.asarray(sample_ids, dtype=np.int64), version=version)
    except EmbeddingsMissing as error:
        raise RoundFailed(
            f"the embeddings do not cover every sample yet (images imported after the "
            f"representation stage ran?): {error}"
        ) from error


def _class_indices(rows: list[tuple[Any, ...]], classes: list[str]) -> tuple[list[int], list[int]]:
    """Positions of rows whose label is a known class, and those class indices."""
    index = {name: i for i, name in enumerate(classes)}
    keep, labels = [], []
    for position, row in enumerate(rows):
        if row[1] in index:
            keep.append(position)
            labels.append(index[row[1]])
    return keep, labels


def run_round(
    engine: Engine,
    round_id: int,
    *,
    data_dir: Path,
    worker: str,
    device: str = "auto",
) -> str:
    """Run a round this worker has claimed; returns its final status (see `_run_round`).

    A round that succeeded then gets its dashboard pool summary, outside the round's own error
    handling: the round is already served, and nothing here may undo it.
    """
    status = _run_round(
        engine,
        round_id,
        data_dir=data_dir,
        worker=worker,
        device=device,
    )
    if status == RoundStatus.SUCCEEDED:
        _store_pool_summary(engine, round_id)
        _prune_older_rounds(engine, round_id, data_dir)
    return status


def _prune_older_rounds(engine: Engine, round_id: int, data_dir: Path) -> None:
    """Older rounds' scores and checkpoints go once this one's summary is stored (it reads its
    predecessor's scores). A failure leaves them for the next round to remove."""
    try:
        with read_session(engine) as session:
            row = session.get(Round, round_id)
            project_id = None if row is None else row.project_id
        if project_id is not None:
            pruned = prune_old_rounds(engine, project_id, data_dir=data_dir)
            if pruned:
                log.info(
                    "round %s: removed the scores and checkpoints of rounds %s", round_id, pruned
                )
    except Exception:
        log.exception("could not remove the outputs of rounds before round %s", round_id)


def _store_pool_summary(engine: Engine, round_id: int) -> None:
    """Histograms, scatter sample, galleries and stability of the round's pool, computed once
    here so that no dashboard visitor has to (about half a second at 100,000 samples). A failure
    only costs the first visitor that computation."""
    started = time.perf_counter()
    try:
        store_pool_summary(engine, round_id)
    except Exception:
        log.exception("could not store the dashboard pool summary of round %s", round_id)
        return
    log.info("round %s: pool summary stored in %.2f s", round_id, time.perf_counter() - started)


def _run_round(
    engine: Engine,
    round_id: int,
    *,
    data_dir: Path,
    worker: str,
    device: str = "auto",
) -> str:
    """Run a round this worker has claimed; returns its final status.

    Never raises for a failing round: the round row says why (one plain line), the traceback
    goes to the worker log, and everything the round wrote is removed again.
    """

    monitor = RoundMonitor(engine, round_id, worker=worker, interval=HEARTBEAT_S).start()
    checkpoint: Path | None = None
    try:
        started = time.perf_counter()
        monitor.update(RoundProgress("loading", 0.0, {}))
        snap = _snapshot(engine, round_id)
        settings = snap.settings
        train_keep, train_labels = _class_indices(snap.train, snap.classes)
        train_rows = [snap.train[i] for i in train_keep]
        eval_keep, eval_labels = _class_indices(snap.eval_rows, snap.classes)
        eval_rows = [snap.eval_rows[i] for i in eval_keep]
        _check_enough_labels(snap.classes, train_labels)
        # Open pool samples are ranked; labeled ones are scored only (label-error review).
        pool_ids = [r[0] for r in snap.pool_open] + [r[0] for r in train_rows]
        pool_refs = [(r[1], r[2]) for r in snap.pool_open] + [(r[2], r[3]) for r in train_rows]
        rankable = torch.zeros(len(pool_ids), dtype=torch.bool)
        rankable[: len(snap.pool_open)] = True
        monitor.set_extra(
            annotation_watermark=snap.watermark,
            n_labels=len(train_rows),
            eval_source=snap.eval_source,
            n_eval=len(eval_rows),
        )
        with_write_retry(
            engine,
            lambda s: job_queries.set_running_fields(
                s,
                Round,
                round_id,
                worker=worker,
                n_labels=len(train_rows),
                detail=monitor.detail(),
                strategy=settings.strategy,
                config=settings.to_json(),
            ),
        )
        cache = TensorCache(
            project_cache_dir(data_dir, snap.project_id),
            channels=settings.channels,
            image_size=settings.image_size,
        )

        def rebuilding(done: int, total: int) -> None:
            monitor.update(RoundProgress("rebuilding cache", 0.0, {"rebuilt": done, "of": total}))

        # Shards that are missing, damaged or of an older image size/channels are decoded
        # again from the stored files first (the round's phase says so meanwhile).
        pool_pixels = load_pixels(engine, snap.project_id, cache, pool_refs, progress=rebuilding)
        train_pixels = pool_pixels[len(snap.pool_open) :]  # the labeled rows come last
        eval_pixels = (
            load_pixels(
                engine,
                snap.project_id,
                cache,
                [(r[2], r[3]) for r in eval_rows],
                progress=rebuilding,
            )
            if eval_rows
            else None
        )
        features: dict[str, Any] = {}
        if needs_features(settings):  # the learner or the strategy reads embeddings
            eval_ids = [int(r[0]) for r in eval_rows]
            rows = load_embeddings(engine, data_dir, snap.project_id, pool_ids + eval_ids)
            pool_features = rows[: len(pool_ids)]
            features = {
                "pool_features": pool_features,
                "train_features": pool_features[len(snap.pool_open) :],
                "eval_features": rows[len(pool_ids) :] if eval_rows else None,
                "train_pool_index": np.arange(len(snap.pool_open), len(pool_ids)),
            }
        timings = {"loading": time.perf_counter() - started}

        result = train_and_score(
            train_pixels=train_pixels,
            train_labels=np.asarray(train_labels, dtype=np.int64),
            pool_pixels=pool_pixels,
            eval_pixels=eval_pixels,
            eval_labels=np.asarray(eval_labels, dtype=np.int64) if eval_rows else None,
            n_classes=len(snap.classes),
            settings=settings,
            pool_rankable=rankable,
            eval_sample_ids=[int(r[0]) for r in eval_rows],
            device=device,
            progress=monitor.update,
            **features,
        )
        timings.update(result.timings)
        honesty_started = time.perf_counter()
        judged = (
            round_honesty(
                pool_pixels=pool_pixels,
                embeddings=features.get("pool_features"),
                mean_probs=result.pool.mean_probs,
                n_open=len(snap.pool_open),
                labels=np.asarray(train_labels, dtype=np.int64),
                n_classes=len(snap.classes),
                seed=settings.seed,
            )
            if result.pool is not None
            else None
        )
        timings["honesty"] = time.perf_counter() - honesty_started
        with_write_retry(
            engine,
            lambda s: job_queries.set_running_fields(
                s, Round, round_id, worker=worker, device=result.device
            ),
        )

        saving_started = time.perf_counter()
        monitor.update(RoundProgress("saving", 1 - SAVING_SHARE, {"saved": 0}))
        checkpoint = checkpoint_dir(data_dir, snap.project_id, round_id)
        result.model.save(checkpoint)
        store_metrics(engine, round_id, result, snap.eval_source)
        store_scores(engine, round_id, pool_ids, result.pool, judged, monitor.update)
        timings["saving"] = time.perf_counter() - saving_started
        timings["total"] = time.perf_counter() - started
        monitor.check()
        monitor.stop()
        detail = {
            **monitor.detail(),
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "epochs_run": result.history.epochs_run,
        }

        def flip(session: Any) -> str:
            # "cancelled": the RoundCancelled handler below marks it and cleans up
            return finish_succeeded(
                session,
                Round,
                round_id,
                worker=worker,
                detail=detail,
                checkpoint=str(checkpoint.resolve()),
            )

        outcome = with_write_retry(engine, flip)
        if outcome == RoundStatus.SUCCEEDED:
            log.info("round %s succeeded in %.1f s (%s)", round_id, timings["total"], detail)
            return outcome
        raise RoundLost("round finished elsewhere") if outcome == "lost" else RoundCancelled()
    except RoundCancelled:
        monitor.stop()
        log.info("round %s cancelled", round_id)
        _finish_unsuccessful(
            engine, round_id, worker, RoundStatus.CANCELLED, "cancelled by request"
        )
        _cleanup(engine, round_id, data_dir)
        return RoundStatus.CANCELLED
    except RoundLost:
        monitor.stop()
        log.warning("round %s was taken from this worker (stale heartbeat?)", round_id)
        _cleanup(engine, round_id, data_dir)
        return "lost"
    except KeyboardInterrupt:
        # Ctrl-C in `activelearn train --wait` (or a worker in a terminal): the user stopped
        # the round, which is a cancel, not a failure.
        monitor.stop()
        log.info("round %s cancelled by an interrupt", round_id)
        _finish_unsuccessful(
            engine, round_id, worker, RoundStatus.CANCELLED, "cancelled (interrupted)"
        )
        _cleanup(engine, round_id, data_dir)
        raise
    except BaseException as error:
        monitor.stop()
        log.exception("round %s failed", round_id)
        _finish_unsuccessful(engine, round_id, worker, RoundStatus.FAILED, _one_line(error))
        _cleanup(engine, round_id, data_dir)
        if not isinstance(error, Exception):
            raise  # SystemExit / KeyboardInterrupt: the round is marked, now let the worker stop
        return RoundStatus.FAILED


def _finish_unsuccessful(
    engine: Engine, round_id: int, worker: str, status: str, error: str
) -> None:
    finish_unsuccessful(
        engine, Round, round_id, noun=RoundMonitor.noun, worker=worker, status=status, error=error
    )


def _cleanup(engine: Engine, round_id: int, data_dir: Path) -> None:
    """Remove what an unsuccessful round wrote: it is never served, so it is only clutter."""
    try:
        discard_outputs(engine, [round_id], data_dir=data_dir)
    except Exception:
        log.exception("could not remove the outputs of round %s", round_id)
