"""One active-learning round: train the ensemble, evaluate it, score the pool, store it all.

Two layers:
- `train_and_score` is pure (tensors in, results out, no database): the worker and
  `activelearn simulate` both run exactly this function.
- `run_round` is the worker's side: snapshot the labels, load pixels from the tensor cache, call
  `train_and_score` with a progress callback, then commit metrics, curves and scores in short
  write transactions before flipping the round to succeeded in one last one (the queue only ever
  reads the latest *succeeded* round, so serving switches to the new ranking atomically), and
  finally stores the dashboard's pool summary of the round (see services.dashboard).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from activelearn.clock import utcnow
from activelearn.core import acquisition, metrics
from activelearn.core.ensemble import Ensemble, EnsembleConfig, FitHistory, FitProgress
from activelearn.paths import checkpoint_dir, project_cache_dir
from activelearn.services.settings import ProjectSettings

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger("activelearn.worker")
HEARTBEAT_S = 1.0  # progress and liveness writes; the reaper allows 30 s of silence

SCORE_CHUNK_ROWS = 2_000  # sample_scores rows per write transaction: each commit takes milliseconds
PREDICT_CHUNK = 1_024  # pool images per forward pass while scoring (progress granularity)
RELIABILITY_BINS = 15
MAX_CURVE_POINTS = 200
MAX_EVAL_PREDICTIONS = 20_000
MIN_TRAIN_STEPS = 100  # optimizer steps per round at least (epochs are raised for small sets)
LABELED_PRIORITY = -1e9  # labeled pool samples are scored (for label-error review), never served
BATCH_PRIORITY_BASE = 1e6  # batch strategies: the chosen batch sits above every BALD score

# Share of a round's progress bar per phase; training gets the rest, scaled by the work.
_LOADING_SHARE = 0.03
_SAVING_SHARE = 0.05


class RoundCancelled(Exception):
    """Raised out of the progress callback when someone cancelled the running round."""


class RoundLost(Exception):
    """The round stopped being ours (reaped as stale, or finished elsewhere): stop quietly."""


class RoundFailed(Exception):
    """A round cannot run, with a plain reason for the person who asked for it."""


@dataclass(frozen=True)
class RoundProgress:
    phase: str  # loading | training | evaluating | scoring | saving
    progress: float  # 0..1 over the whole round
    detail: dict[str, Any]  # member, epoch, epochs, loss, losses, scored, total, ...


ProgressCallback = Callable[[RoundProgress], None]


@dataclass(frozen=True)
class MemberMetrics:
    """Evaluation of one member (member >= 0) or of the ensemble (member == -1)."""

    member: int
    n_eval: int
    accuracy: float
    accuracy_se: float
    nll: float
    nll_se: float
    brier: float
    brier_se: float
    ece: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolScoreTable:
    """Scores of N pool images under an M-member ensemble with C classes."""

    mutual_information: Tensor  # (N,)
    predictive_entropy: Tensor  # (N,)
    expected_entropy: Tensor  # (N,)
    variance: Tensor  # (N,)
    margin: Tensor  # (N,) 1 - (top1 - top2): high = ambiguous
    predicted_class: Tensor  # (N,) long
    confidence: Tensor  # (N,) max of the mean prediction
    mean_probs: Tensor  # (N, C)
    member_predictions: Tensor  # (M, N) long
    priority: Tensor  # (N,) float64, higher = served first; LABELED_PRIORITY when not rankable
    rank: Tensor  # (N,) long, 1-based among rankable samples; 0 when not rankable


@dataclass(frozen=True)
class TrainResult:
    ensemble: Ensemble
    history: FitHistory
    metrics: list[MemberMetrics]  # ensemble first (-1), then members; empty without eval data
    pool: PoolScoreTable | None  # None for an empty pool
    timings: dict[str, float]  # seconds per phase
    device: str


def ensemble_config(settings: ProjectSettings, *, device: str = "auto") -> EnsembleConfig:
    """The ensemble a project's settings ask for."""
    return EnsembleConfig(
        members=settings.members,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        seed=settings.seed,
        device=device,
        early_stopping=settings.early_stopping,
        augment=settings.augment,
        class_weighting=settings.class_weighting,
    )


# ---------------------------------------------------------------- evaluation


def _finite_or_none(values: list[float], digits: int = 6) -> list[float | None]:
    # JSON has no NaN (PostgreSQL rejects it): an empty reliability bin is stored as null.
    return [round(float(v), digits) if math.isfinite(v) else None for v in values]


def _se(values: Tensor) -> float:
    se = metrics.standard_error(values)
    return se if math.isfinite(se) else 0.0  # one evaluation sample: no spread to measure


def _risk_coverage(confidence: Tensor, correct: Tensor) -> dict[str, Any]:
    coverage, risk, aurc = metrics.risk_coverage(confidence, correct)
    if len(coverage) > MAX_CURVE_POINTS:
        pick = torch.linspace(0, len(coverage) - 1, MAX_CURVE_POINTS).round().long()
        coverage, risk = coverage[pick], risk[pick]
    return {
        "coverage": _finite_or_none(coverage.tolist()),
        "risk": _finite_or_none(risk.tolist()),
        "aurc": round(aurc, 6),
    }


def evaluate_probs(
    probs: Tensor,
    labels: Tensor,
    *,
    member: int,
    sample_ids: list[int] | None = None,
    with_details: bool = False,
) -> MemberMetrics:
    """Accuracy, NLL, Brier and ECE of `probs` (N, C) against `labels` (N,), with SEs.

    The standard errors are those of the mean of the per-sample values (binomial for accuracy).
    """
    p = probs.to(torch.float64)
    y = labels.to(torch.long)
    n, c = p.shape
    confidence, predicted = p.max(-1)  # (N,), (N,)
    correct = (predicted == y).to(torch.float64)  # (N,)
    per_sample_nll = metrics.nll_per_sample(p, y)  # (N,)
    per_sample_brier = metrics.brier_per_sample(p, y)  # (N,)
    ece, bins = metrics.expected_calibration_error(p, y, n_bins=RELIABILITY_BINS)
    accuracy = metrics.accuracy(p, y)
    details: dict[str, Any] = {}
    if with_details:
        confusion = torch.zeros(c, c, dtype=torch.long)
        confusion.index_put_((y, predicted), torch.ones(n, dtype=torch.long), accumulate=True)
        details = {
            "reliability": {
                "edges": _finite_or_none(bins.edges),
                "confidence": _finite_or_none(bins.confidence),
                "accuracy": _finite_or_none(bins.accuracy),
                "counts": [int(v) for v in bins.counts],
            },
            "confusion": confusion.tolist(),
            "risk_coverage": _risk_coverage(confidence, correct),
        }
        if n <= MAX_EVAL_PREDICTIONS:
            details["eval_predictions"] = {
                "sample_ids": list(sample_ids) if sample_ids is not None else list(range(n)),
                "confidence": [round(float(v), 4) for v in confidence],
                "correct": [bool(v) for v in correct],
                "predicted": [int(v) for v in predicted],
                "true": [int(v) for v in y],
            }
    return MemberMetrics(
        member=member,
        n_eval=n,
        accuracy=accuracy,
        accuracy_se=math.sqrt(accuracy * (1.0 - accuracy) / n),
        nll=float(per_sample_nll.mean()),
        nll_se=_se(per_sample_nll),
        brier=float(per_sample_brier.mean()),
        brier_se=_se(per_sample_brier),
        ece=ece,
        details=details,
    )


# ---------------------------------------------------------------- scoring


def score_pool_probs(
    probs: Tensor,
    *,
    strategy: str,
    acquisition_batch: int,
    rankable: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> PoolScoreTable:
    """Scores and serving priority of pool samples from member probabilities (M, N, C).

    Only `rankable` samples (default: all) get a rank; the rest get LABELED_PRIORITY. Scorer
    strategies rank by their score; "random" by a uniform draw; batch strategies put their
    selected batch (in selection order) above everything and rank the rest by BALD.
    """
    _members, n, _c = probs.shape
    mask = torch.ones(n, dtype=torch.bool) if rankable is None else rankable.to(torch.bool)
    summary = acquisition.uncertainty_summary(probs)  # float64, (N,) each
    mi = summary["mutual_information"]
    priority = torch.full((n,), LABELED_PRIORITY, dtype=torch.float64)
    positions = torch.nonzero(mask).flatten()  # (R,) indices of rankable samples
    if len(positions) > 0:
        sub = probs[:, positions, :]  # (M, R, C)
        if strategy in acquisition.SCORERS:
            value = acquisition.get_scorer(strategy)(sub).to(torch.float64)
        elif strategy == "random":
            value = torch.rand(len(positions), generator=generator, dtype=torch.float64)
        elif strategy in ("batchbald", "power_bald"):
            value = mi[positions].clone()
            chosen = acquisition.select(strategy, sub, acquisition_batch, generator=generator)
            k = len(chosen)
            value[chosen] = BATCH_PRIORITY_BASE + (k - torch.arange(k, dtype=torch.float64))
        else:
            raise RoundFailed(
                f"unknown acquisition strategy {strategy!r}; known: "
                + ", ".join(acquisition.STRATEGIES)
            )
        priority[positions] = value
    rank = torch.zeros(n, dtype=torch.long)
    if len(positions) > 0:
        order = torch.sort(priority[positions], descending=True, stable=True).indices
        rank[positions[order]] = torch.arange(1, len(positions) + 1)
    return PoolScoreTable(
        mutual_information=mi,
        predictive_entropy=summary["predictive_entropy"],
        expected_entropy=summary["expected_entropy"],
        variance=summary["variance"],
        margin=summary["margin"],
        predicted_class=summary["predicted_class"],
        confidence=summary["confidence"],
        mean_probs=summary["mean_probs"],
        member_predictions=probs.argmax(-1),
        priority=priority,
        rank=rank,
    )


# ---------------------------------------------------------------- the pure round


def train_and_score(
    *,
    train_pixels: np.ndarray | Tensor,
    train_labels: np.ndarray | Tensor,
    pool_pixels: np.ndarray | Tensor,
    eval_pixels: np.ndarray | Tensor | None,
    eval_labels: np.ndarray | Tensor | None,
    n_classes: int,
    settings: ProjectSettings,
    pool_rankable: Tensor | None = None,
    eval_sample_ids: list[int] | None = None,
    device: str = "auto",
    seed: int | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train all members from scratch, evaluate on the eval set, score the pool.

    Pixels are uint8 (N, C, S, S); labels are class indices (N,). `seed` overrides
    settings.seed (the simulation varies it per repeat). Exceptions raised by `progress`
    propagate (that is how a round is cancelled).
    """
    report = progress or (lambda _update: None)
    timings: dict[str, float] = {}
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    if len(labels) == 0:
        raise RoundFailed("there are no labeled pool images to train on yet: label some first")
    config = ensemble_config(settings, device=device)
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    if steps_per_epoch * config.epochs < MIN_TRAIN_STEPS:
        # A fixed epoch count is a handful of updates on the first rounds' 20-30 labels: the
        # members would stay near their initialisation and agree on nothing worth measuring.
        config = replace(config, epochs=min(math.ceil(MIN_TRAIN_STEPS / steps_per_epoch), 1000))
    if seed is not None:
        config = replace(config, seed=int(seed))
    channels, image_size = int(train_pixels.shape[1]), int(train_pixels.shape[-1])
    ensemble = Ensemble(config, in_channels=channels, n_classes=n_classes, image_size=image_size)
    n_pool = int(pool_pixels.shape[0])
    n_eval = 0 if eval_pixels is None else int(eval_pixels.shape[0])
    # Progress shares by rough cost: a training image costs ~3 forward passes per member-epoch.
    train_work = 3.0 * config.epochs * len(labels)
    total_work = train_work + n_eval + n_pool
    span = 1.0 - _LOADING_SHARE - _SAVING_SHARE
    train_end = _LOADING_SHARE + span * train_work / total_work
    eval_end = train_end + span * n_eval / total_work

    def on_fit(update: FitProgress) -> None:
        done = (update.epoch - 1 + update.step / max(update.steps, 1)) / update.epochs
        losses = [round(float(v), 5) for v in update.losses]
        report(
            RoundProgress(
                "training",
                _LOADING_SHARE + (train_end - _LOADING_SHARE) * done,
                {
                    "member": "all",  # the members train together as one vectorized model
                    "members": config.members,
                    "epoch": update.epoch,
                    "epochs": update.epochs,
                    "step": update.step,
                    "steps": update.steps,
                    "loss": round(sum(losses) / len(losses), 5),
                    "losses": losses,
                },
            )
        )

    started = time.perf_counter()
    history = ensemble.fit(torch.as_tensor(np.asarray(train_pixels)), labels, progress=on_fit)
    timings["training"] = time.perf_counter() - started

    metrics: list[MemberMetrics] = []
    if n_eval > 0 and eval_pixels is not None and eval_labels is not None:
        started = time.perf_counter()
        report(RoundProgress("evaluating", train_end, {"n_eval": n_eval}))
        y_eval = torch.as_tensor(np.asarray(eval_labels), dtype=torch.long)
        probs = ensemble.predict_proba(torch.as_tensor(np.asarray(eval_pixels)))  # (M, N, C)
        metrics.append(
            evaluate_probs(
                probs.mean(0), y_eval, member=-1, sample_ids=eval_sample_ids, with_details=True
            )
        )
        metrics.extend(evaluate_probs(probs[i], y_eval, member=i) for i in range(len(probs)))
        timings["evaluating"] = time.perf_counter() - started

    pool: PoolScoreTable | None = None
    if n_pool > 0:
        started = time.perf_counter()
        pool_tensor = torch.as_tensor(np.asarray(pool_pixels))
        chunks = []
        for lo in range(0, n_pool, PREDICT_CHUNK):
            share = lo / n_pool
            report(
                RoundProgress(
                    "scoring",
                    eval_end + (1 - _SAVING_SHARE - eval_end) * share,
                    {"scored": lo, "total": n_pool},
                )
            )
            chunks.append(ensemble.predict_proba(pool_tensor[lo : lo + PREDICT_CHUNK]))
        probs = torch.cat(chunks, dim=1)  # (M, N, C)
        generator = torch.Generator().manual_seed(config.seed)
        pool = score_pool_probs(
            probs,
            strategy=settings.strategy,
            acquisition_batch=settings.acquisition_batch,
            rankable=pool_rankable,
            generator=generator,
        )
        report(RoundProgress("scoring", 1 - _SAVING_SHARE, {"scored": n_pool, "total": n_pool}))
        timings["scoring"] = time.perf_counter() - started
    return TrainResult(
        ensemble=ensemble,
        history=history,
        metrics=metrics,
        pool=pool,
        timings=timings,
        device=str(ensemble.device),
    )


# ---------------------------------------------------------------- the worker's round


class RoundMonitor:
    """Heartbeat thread of a running round: writes the latest progress and the heartbeat every
    `interval` seconds (so the UI sees progress at least every 2 s even inside a long epoch),
    and picks up cancel requests. The training thread calls `update`, which raises
    RoundCancelled or RoundLost once the monitor has seen either.
    """

    def __init__(self, engine: Engine, round_id: int, *, worker: str, interval: float) -> None:
        self.engine = engine
        self.round_id = round_id
        self.worker = worker
        self.interval = interval
        self._lock = threading.Lock()
        self._state: RoundProgress | None = None
        self._dirty = False
        self._extra: dict[str, Any] = {}
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{round_id}", daemon=True)

    def start(self) -> RoundMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def set_extra(self, **values: Any) -> None:
        """Fields merged into every detail written (watermark, n_labels, timings, ...)."""
        with self._lock:
            self._extra.update(values)
            self._dirty = True

    def detail(self) -> dict[str, Any]:
        with self._lock:
            base = dict(self._state.detail) if self._state is not None else {}
            return {**base, **self._extra}

    def update(self, state: RoundProgress) -> None:
        self.check()
        with self._lock:
            self._state = state
            self._dirty = True

    def check(self) -> None:
        if self.lost.is_set():
            raise RoundLost(f"round {self.round_id} is no longer held by this worker")
        if self.cancelled.is_set():
            raise RoundCancelled(f"round {self.round_id} was cancelled")

    def beat(self) -> None:
        """One heartbeat write (also called directly by the worker between phases)."""
        from db import rounds as round_queries
        from db.engine import with_write_retry

        with self._lock:
            state, dirty = self._state, self._dirty
            detail = {**(state.detail if state else {}), **self._extra} if dirty else None
            self._dirty = False

        def work(session: Any) -> tuple[bool, bool]:
            return round_queries.heartbeat(
                session,
                self.round_id,
                worker=self.worker,
                now=utcnow(),
                phase=state.phase if dirty and state else None,
                progress=round(state.progress, 4) if dirty and state else None,
                detail=detail,
            )

        ours, cancel = with_write_retry(self.engine, work)
        if not ours:
            self.lost.set()
        if cancel:
            self.cancelled.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a missed beat is retried next interval; the reaper allows 30 s
                log.exception("heartbeat of round %s failed", self.round_id)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    message = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if isinstance(error, RoundFailed):
        message = text
    return message[:500]


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
    from db import queries
    from db import rounds as round_queries
    from db.engine import read_session

    with read_session(engine) as session:
        row = round_queries.get_round(session, round_id)
        if row is None:
            raise RoundFailed(f"round {round_id} no longer exists")
        project = queries.get_project_by_id(session, row.project_id)
        if project is None:
            raise RoundFailed(f"the project of round {round_id} no longer exists")
        # The round's own settings snapshot (taken when it was requested) drives the training.
        settings = ProjectSettings.from_json(row.config or project.settings)
        watermark = queries.max_annotation_id(session, project.id)
        train = queries.samples_for_training(session, project.id, "pool")
        test = queries.samples_with_gold(session, project.id, "test")
        if test:
            eval_rows, source = test, "test"
        else:
            audit = queries.samples_for_training(session, project.id, "eval")
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
    if status == "succeeded":
        _store_pool_summary(engine, round_id)
    return status


def _store_pool_summary(engine: Engine, round_id: int) -> None:
    """Histograms, scatter sample, galleries and stability of the round's pool, computed once
    here so that no dashboard visitor has to (about half a second at 100,000 samples). A failure
    only costs the first visitor that computation."""
    from activelearn.services.dashboard import store_pool_summary

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
    from activelearn.ingest.cache import TensorCache
    from db import rounds as round_queries
    from db.engine import with_write_retry

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
            lambda s: round_queries.set_running_fields(
                s, round_id, worker=worker, n_labels=len(train_rows), detail=monitor.detail()
            ),
        )
        cache = TensorCache(
            project_cache_dir(data_dir, snap.project_id),
            channels=settings.channels,
            image_size=settings.image_size,
        )
        pool_pixels = cache.load(pool_refs)
        train_pixels = pool_pixels[len(snap.pool_open) :]  # the labeled rows come last
        eval_pixels = cache.load([(r[2], r[3]) for r in eval_rows]) if eval_rows else None
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
        )
        timings.update(result.timings)
        with_write_retry(
            engine,
            lambda s: round_queries.set_running_fields(
                s, round_id, worker=worker, device=result.device
            ),
        )

        saving_started = time.perf_counter()
        monitor.update(RoundProgress("saving", 1 - _SAVING_SHARE, {"saved": 0}))
        checkpoint = checkpoint_dir(data_dir, snap.project_id, round_id)
        result.ensemble.save(checkpoint)
        _store_metrics(engine, round_id, result, snap.eval_source)
        _store_scores(engine, round_id, pool_ids, result.pool, monitor)
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
            from db.models import Round

            row = session.get(Round, round_id)
            if row is None or row.status != "running" or row.worker != worker:
                return "lost"
            if row.cancel_requested:
                return "cancelled"  # the RoundCancelled handler below marks it and cleans up
            round_queries.finish_round(
                session,
                round_id,
                worker=worker,
                status="succeeded",
                now=utcnow(),
                progress=1.0,
                detail=detail,
                checkpoint=str(checkpoint.resolve()),
                heartbeat_at=utcnow(),
            )
            return "succeeded"

        outcome = with_write_retry(engine, flip)
        if outcome == "succeeded":
            log.info("round %s succeeded in %.1f s (%s)", round_id, timings["total"], detail)
            return outcome
        raise RoundLost("round finished elsewhere") if outcome == "lost" else RoundCancelled()
    except RoundCancelled:
        monitor.stop()
        log.info("round %s cancelled", round_id)
        _finish_unsuccessful(engine, round_id, worker, "cancelled", "cancelled by request")
        _cleanup(engine, round_id, data_dir)
        return "cancelled"
    except RoundLost:
        monitor.stop()
        log.warning("round %s was taken from this worker (stale heartbeat?)", round_id)
        _cleanup(engine, round_id, data_dir)
        return "lost"
    except BaseException as error:
        monitor.stop()
        log.exception("round %s failed", round_id)
        _finish_unsuccessful(engine, round_id, worker, "failed", _one_line(error))
        _cleanup(engine, round_id, data_dir)
        if not isinstance(error, Exception):
            raise  # SystemExit / KeyboardInterrupt: the round is marked, now let the worker stop
        return "failed"


def _finish_unsuccessful(
    engine: Engine, round_id: int, worker: str, status: str, error: str
) -> None:
    from db import rounds as round_queries
    from db.engine import with_write_retry

    try:
        with_write_retry(
            engine,
            lambda s: round_queries.finish_round(
                s, round_id, worker=worker, status=status, now=utcnow(), error=error
            ),
        )
    except Exception:
        log.exception("could not mark round %s %s", round_id, status)


def _cleanup(engine: Engine, round_id: int, data_dir: Path) -> None:
    """Remove what an unsuccessful round wrote: it is never served, so it is only clutter."""
    from activelearn.services.rounds import discard_outputs

    try:
        discard_outputs(engine, [round_id], data_dir=data_dir)
    except Exception:
        log.exception("could not remove the outputs of round %s", round_id)


def _store_metrics(
    engine: Engine, round_id: int, result: TrainResult, eval_source: str | None
) -> None:
    from db import rounds as round_queries
    from db.engine import with_write_retry

    history = result.history
    epochs = [
        {
            "round_id": round_id,
            "member": member,
            "epoch": epoch + 1,
            "train_loss": float(loss),
            "val_loss": float(history.val_loss[member][epoch]) if history.val_loss else None,
        }
        for member, losses in enumerate(history.train_loss)
        for epoch, loss in enumerate(losses)
    ]
    metrics = [
        {
            "round_id": round_id,
            "member": m.member,
            "eval_source": eval_source or "none",
            "n_eval": m.n_eval,
            "accuracy": m.accuracy,
            "accuracy_se": m.accuracy_se,
            "nll": m.nll,
            "nll_se": m.nll_se,
            "brier": m.brier,
            "brier_se": m.brier_se,
            "ece": m.ece,
            "details": m.details,
        }
        for m in result.metrics
    ]

    def work(session: Any) -> None:
        round_queries.add_training_epochs(session, epochs)
        round_queries.add_round_metrics(session, metrics)

    with_write_retry(engine, work)


def _store_scores(
    engine: Engine,
    round_id: int,
    sample_ids: list[int],
    pool: PoolScoreTable | None,
    monitor: RoundMonitor,
) -> None:
    """sample_scores in chunks, each its own short write transaction (labels interleave)."""
    from db import rounds as round_queries
    from db.engine import with_write_retry

    if pool is None:
        return
    n = len(sample_ids)
    columns = {
        "mutual_information": pool.mutual_information.tolist(),
        "predictive_entropy": pool.predictive_entropy.tolist(),
        "expected_entropy": pool.expected_entropy.tolist(),
        "variance": pool.variance.tolist(),
        "margin": pool.margin.tolist(),
        "predicted_class": pool.predicted_class.tolist(),
        "confidence": pool.confidence.tolist(),
        "priority": pool.priority.tolist(),
    }
    names = list(columns)
    ranks = [rank or None for rank in pool.rank.tolist()]  # 0: not ranked
    mean_probs = pool.mean_probs.tolist()
    votes = pool.member_predictions.T.tolist()  # (N, M) python ints
    for lo in range(0, n, SCORE_CHUNK_ROWS):
        hi = min(lo + SCORE_CHUNK_ROWS, n)
        monitor.update(
            RoundProgress(
                "saving",
                1 - _SAVING_SHARE + _SAVING_SHARE * lo / max(n, 1),
                {"saved": lo, "total": n},
            )
        )
        rows = [
            {
                **dict(zip(names, values, strict=True)),
                "rank": rank,
                "round_id": round_id,
                "sample_id": int(sample_id),
                "mean_probs": [round(v, 4) for v in probs],
                "member_predictions": vote,
            }
            for values, rank, sample_id, probs, vote in zip(
                zip(*(column[lo:hi] for column in columns.values()), strict=True),
                ranks[lo:hi],
                sample_ids[lo:hi],
                mean_probs[lo:hi],
                votes[lo:hi],
                strict=True,
            )
        ]
        with_write_retry(engine, lambda s, rows=rows: round_queries.add_sample_scores(s, rows))
