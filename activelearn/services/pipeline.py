"""The pure round pipeline: train -> evaluate -> score -> select, tensors in, results out.

No database here: the worker's round runner (services.round_runner) and `activelearn simulate`
both call `train_and_score`, so a simulated round is exactly a served round. The learner comes
from the registry (activelearn.core.learners, the `learner` setting) and the strategy from
activelearn.core.strategies (the `strategy` setting): nothing here branches on either name.

Shapes: pixels (N, C, S, S) uint8, labels (N,) class indices, features (N, D) float32 (the
representation stage's per-sample embeddings, optional); the learner's output, probs, is
(M, N, K): M members, N images, K classes. A learner gets the inputs it declares
(`Learner.inputs`: pixels or features) and the whole pool in that kind; a strategy gets the
pool's features and which rows are labeled (core.strategies.PoolContext).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from activelearn.core import acquisition, metrics
from activelearn.core.learner import FitHistory, FitProgress, FittedModel, LearnerSpec, PoolView
from activelearn.core.learners import learner_inputs, make_learner
from activelearn.core.strategies import PoolContext, Strategy, get_strategy
from activelearn.services.settings import ProjectSettings

PREDICT_CHUNK = 1_024  # pool images per forward pass while scoring (progress granularity)
RELIABILITY_BINS = 15
MAX_CURVE_POINTS = 200
MAX_EVAL_PREDICTIONS = 20_000
LABELED_PRIORITY = -1e9  # labeled pool samples are scored (for label-error review), never served

# Share of a round's progress bar per phase; training gets the rest, scaled by the work.
LOADING_SHARE = 0.03
SAVING_SHARE = 0.05


class RoundFailed(Exception):
    """A round cannot run, with a plain reason for the person who asked for it."""


NO_FEATURES = (
    "the representation stage has not finished yet for this project: {what} needs the "
    "samples' embeddings (learner 'cnn' with a probability strategy works meanwhile)"
)


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
    """Scores of N pool images under an M-member learner with C classes (the score fields of
    activelearn.score_fields, plus what the round stores beside them)."""

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
    reasons: dict[int, str] = field(default_factory=dict)  # row -> "why this sample" (chosen)


@dataclass(frozen=True)
class PoolRanking:
    """Serving order of N pool rows: priority (N,) float64, rank (N,) long (1-based among the
    rankable rows, 0 for the others) and a "why this sample" per chosen row where known."""

    priority: Tensor
    rank: Tensor
    reasons: dict[int, str]


@dataclass(frozen=True)
class TrainResult:
    model: FittedModel
    history: FitHistory
    metrics: list[MemberMetrics]  # ensemble first (-1), then members; empty without eval data
    pool: PoolScoreTable | None  # None for an empty pool
    timings: dict[str, float]  # seconds per phase
    device: str


def learner_spec(
    settings: ProjectSettings,
    *,
    n_classes: int,
    in_channels: int,
    image_size: int,
    device: str = "auto",
    seed: int | None = None,
) -> LearnerSpec:
    """What the project's settings ask of its learner (`seed` overrides settings.seed)."""
    return LearnerSpec(
        n_classes=n_classes,
        in_channels=in_channels,
        image_size=image_size,
        members=settings.members,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        seed=settings.seed if seed is None else int(seed),
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


# ---------------------------------------------------------------- scoring and selection


def needs_features(settings: ProjectSettings) -> bool:
    """Whether a round with these settings reads the samples' embeddings (its learner consumes
    them or its strategy clusters them); unknown names fail later, with their own message."""
    try:
        return (
            learner_inputs(settings.learner) == "embeddings"
            or get_strategy(settings.strategy).needs_features
        )
    except ValueError:
        return False


def _strategy(name: str) -> Strategy:
    try:
        return get_strategy(name)
    except ValueError as error:
        raise RoundFailed(str(error)) from None


def rank_pool(
    probs: Tensor | None,
    *,
    strategy: str,
    acquisition_batch: int,
    n_pool: int,
    n_classes: int,
    rankable: Tensor | None = None,
    features: Tensor | np.ndarray | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> PoolRanking:
    """Serving order of n_pool rows by `strategy` from probs (M, N, C), or None before the first
    model (the cold start: feature strategies cluster, probability strategies draw at random).

    Only `rankable` rows (default: all) get a rank; the rest (the labeled rows) get
    LABELED_PRIORITY but still inform a feature strategy (clusters they cover).
    """
    chosen_strategy = _strategy(strategy)
    mask = torch.ones(n_pool, dtype=torch.bool) if rankable is None else rankable.to(torch.bool)
    if chosen_strategy.needs_features and features is None:
        raise RoundFailed(NO_FEATURES.format(what=f"strategy {strategy!r}"))
    context = PoolContext(
        rankable=mask,
        n_classes=n_classes,
        features=None if features is None else torch.as_tensor(np.asarray(features)),
        seed=seed,
    )
    ranking = chosen_strategy.rank(probs, acquisition_batch, context=context, generator=generator)
    priority = torch.full((n_pool,), LABELED_PRIORITY, dtype=torch.float64)
    positions = torch.nonzero(mask).flatten()  # (R,) indices of rankable samples
    rank = torch.zeros(n_pool, dtype=torch.long)
    if len(positions) > 0:
        priority[positions] = ranking.priority[positions]
        order = torch.sort(priority[positions], descending=True, stable=True).indices
        rank[positions[order]] = torch.arange(1, len(positions) + 1)
    reasons = {i: text for i, text in ranking.reasons.items() if bool(mask[i])}
    return PoolRanking(priority=priority, rank=rank, reasons=reasons)


def score_pool(
    probs: Tensor,
    *,
    strategy: str,
    acquisition_batch: int,
    rankable: Tensor | None = None,
    generator: torch.Generator | None = None,
    features: Tensor | np.ndarray | None = None,
    seed: int = 0,
) -> PoolScoreTable:
    """Scores and serving priority of pool samples from member probabilities (M, N, C).

    Only `rankable` samples (default: all) get a rank; the rest get LABELED_PRIORITY. The
    strategy (activelearn.core.strategies) gives the rankable samples their priority; a
    batch-aware one puts its chosen `acquisition_batch` samples above everything. `features`
    (N, D): the pool's embeddings, for the strategies that cluster them.
    """
    _members, n, c = probs.shape
    summary = acquisition.uncertainty_summary(probs)  # float64, (N,) each
    ranking = rank_pool(
        probs,
        strategy=strategy,
        acquisition_batch=acquisition_batch,
        n_pool=n,
        n_classes=c,
        rankable=rankable,
        features=features,
        seed=seed,
        generator=generator,
    )
    return PoolScoreTable(
        mutual_information=summary["mutual_information"],
        predictive_entropy=summary["predictive_entropy"],
        expected_entropy=summary["expected_entropy"],
        variance=summary["variance"],
        margin=summary["margin"],
        predicted_class=summary["predicted_class"],
        confidence=summary["confidence"],
        mean_probs=summary["mean_probs"],
        member_predictions=probs.argmax(-1),
        priority=ranking.priority,
        rank=ranking.rank,
        reasons=ranking.reasons,
    )


def predict_in_chunks(
    model: FittedModel,
    pixels: Tensor | np.ndarray,
    *,
    chunk: int = PREDICT_CHUNK,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Tensor:
    """model.predict_proba over (N, C, S, S) pixels, `chunk` images at a time -> (M, N, K).

    `on_chunk(done, total)` runs before each chunk (progress; an exception from it propagates).
    """
    pool_tensor = torch.as_tensor(np.asarray(pixels))
    n = int(pool_tensor.shape[0])
    parts = []
    for lo in range(0, n, chunk):
        if on_chunk is not None:
            on_chunk(lo, n)
        parts.append(model.predict_proba(pool_tensor[lo : lo + chunk]))
    return torch.cat(parts, dim=1)  # (M, N, K)


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
    train_features: np.ndarray | Tensor | None = None,
    pool_features: np.ndarray | Tensor | None = None,
    eval_features: np.ndarray | Tensor | None = None,
    train_pool_index: np.ndarray | Tensor | None = None,
) -> TrainResult:
    """Train the project's learner from scratch, evaluate it on the eval set, score the pool
    and rank it by the project's strategy.

    Pixels are uint8 (N, C, S, S); labels are class indices (N,); features (N, D) are the same
    rows' embeddings, needed when the learner consumes them or the strategy clusters them
    (RoundFailed, one line, when they are needed and missing). `train_pool_index` (L,): where
    the training rows sit among the pool's rows when the pool holds them too (the round
    runner's layout; they are then not rankable); None: the pool holds other samples only.
    `seed` overrides settings.seed (the simulation varies it per repeat). Exceptions raised by
    `progress` propagate (that is how a round is cancelled).
    """
    report = progress or (lambda _update: None)
    timings: dict[str, float] = {}
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    if len(labels) == 0:
        raise RoundFailed("there are no labeled pool images to train on yet: label some first")
    spec = learner_spec(
        settings,
        n_classes=n_classes,
        in_channels=int(train_pixels.shape[1]),
        image_size=int(train_pixels.shape[-1]),
        device=device,
        seed=seed,
    )
    learner = make_learner(settings.learner, spec)
    n_pool = int(pool_pixels.shape[0])
    n_eval = 0 if eval_pixels is None else int(eval_pixels.shape[0])
    # The learner's own kind of input for every set (never a branch on the learner's name).
    by_kind = {
        "pixels": (train_pixels, pool_pixels, eval_pixels),
        "embeddings": (train_features, pool_features, eval_features),
    }
    if learner.inputs not in by_kind:
        raise RoundFailed(f"learner {settings.learner!r} takes unknown inputs {learner.inputs!r}")
    train_x, pool_x, eval_x = by_kind[learner.inputs]
    wanted = [train_x] + [pool_x] * (n_pool > 0) + [eval_x] * (n_eval > 0)
    if any(x is None for x in wanted):
        raise RoundFailed(NO_FEATURES.format(what=f"learner {settings.learner!r}"))
    if n_pool > 0 and pool_features is None and _strategy(settings.strategy).needs_features:
        # checked before training: minutes of training must not end in this message
        raise RoundFailed(NO_FEATURES.format(what=f"strategy {settings.strategy!r}"))
    # Progress shares by rough cost, in image forward passes.
    train_work = learner.planned_work(len(labels))
    total_work = train_work + n_eval + n_pool
    span = 1.0 - LOADING_SHARE - SAVING_SHARE
    train_end = LOADING_SHARE + span * train_work / total_work
    eval_end = train_end + span * n_eval / total_work

    def on_fit(update: FitProgress) -> None:
        done = (update.epoch - 1 + update.step / max(update.steps, 1)) / update.epochs
        losses = [round(float(v), 5) for v in update.losses]
        report(
            RoundProgress(
                "training",
                LOADING_SHARE + (train_end - LOADING_SHARE) * done,
                {
                    "member": "all",  # the members train together as one vectorized model
                    "members": spec.members,
                    "epoch": update.epoch,
                    "epochs": update.epochs,
                    "step": update.step,
                    "steps": update.steps,
                    "loss": round(sum(losses) / len(losses), 5),
                    "losses": losses,
                },
            )
        )

    pool_view = None
    if n_pool > 0:
        index = None if train_pool_index is None else torch.as_tensor(np.asarray(train_pool_index))
        pool_view = PoolView(inputs=torch.as_tensor(np.asarray(pool_x)), train_index=index)
    started = time.perf_counter()
    fitted = learner.fit(train_x, labels, progress=on_fit, pool=pool_view)
    model = fitted.model
    timings["training"] = time.perf_counter() - started

    metrics: list[MemberMetrics] = []
    if n_eval > 0 and eval_x is not None and eval_labels is not None:
        started = time.perf_counter()
        report(RoundProgress("evaluating", train_end, {"n_eval": n_eval}))
        y_eval = torch.as_tensor(np.asarray(eval_labels), dtype=torch.long)
        probs = model.predict_proba(torch.as_tensor(np.asarray(eval_x)))  # (M, N, C)
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

        def on_chunk(done: int, total: int) -> None:
            share = done / total
            report(
                RoundProgress(
                    "scoring",
                    eval_end + (1 - SAVING_SHARE - eval_end) * share,
                    {"scored": done, "total": total},
                )
            )

        probs = fitted.pool_probs  # a transductive learner scored its pool while fitting
        if probs is None:
            probs = predict_in_chunks(model, pool_x, on_chunk=on_chunk)  # (M, N, C)
        pool = score_pool(
            probs,
            strategy=settings.strategy,
            acquisition_batch=settings.acquisition_batch,
            rankable=pool_rankable,
            generator=torch.Generator().manual_seed(spec.seed),
            features=pool_features,
            seed=spec.seed,
        )
        report(RoundProgress("scoring", 1 - SAVING_SHARE, {"scored": n_pool, "total": n_pool}))
        timings["scoring"] = time.perf_counter() - started
    return TrainResult(
        model=model,
        history=fitted.history,
        metrics=metrics,
        pool=pool,
        timings=timings,
        device=str(model.device),
    )
