"""Data for the uncertainty dashboard: small frozen records and DataFrames, one call per section.

The heavy lifting is SQL aggregation in db.dashboard; this module turns rows into plain data for
activelearn.ui.charts and holds the judgement calls, each documented where it is made:
- which labeled samples are suspected label errors (`flag_label_errors`),
- which pool samples are shown as possibly out of distribution (`pool_view`),
- the stopping advice (`advise_stopping`).
Every function reads one round (or the labels) and is cheap to cache per round in the UI.
The pool charts, the one part that would read 100,000 score rows per round, are computed once
when a round succeeds (`store_pool_summary`, called by the rounds worker) and stored in the
database; `pool_view` reads that summary and computes it only where it is missing.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from activelearn.clock import utcnow
from activelearn.errors import UnknownTask
from db import dashboard as dash_queries
from db import queries
from db.engine import read_session, with_write_retry

if TYPE_CHECKING:
    from activelearn.services.workspace import Project

log = logging.getLogger(__name__)

HISTOGRAM_SCORES = ("mutual_information", "predictive_entropy", "variance")
HISTOGRAM_BINS = 40
CONFIDENCE_BINS = 100  # the threshold slider moves in steps of 0.01
SCATTER_POINTS = 4_000  # about this many uniformly sampled points, plus the top ones
SCATTER_TOP = 200
GALLERY_SIZE = 12
SIMULATION_STRATEGY = "random"
METRICS = ("accuracy", "nll", "ece")

# Suspected label errors: EVERY member's top class differs from the given label, the ensemble
# is confident in its own answer, and it gives the label itself little probability. All three
# together keep honest ambiguity (members split, or a 50/50 mean) out of the list.
LABEL_ERROR_MAX_LABEL_PROBABILITY = 0.1
LABEL_ERROR_MIN_CONFIDENCE = 0.8


# ---------------------------------------------------------------- rounds


@dataclass(frozen=True)
class RoundRef:
    id: int
    n_labels: int


@dataclass(frozen=True)
class Overview:
    """The succeeded rounds, oldest first, and the two the pool charts compare."""

    rounds: tuple[RoundRef, ...]
    classes: tuple[str, ...]

    @property
    def latest(self) -> RoundRef | None:
        return self.rounds[-1] if self.rounds else None

    @property
    def previous(self) -> RoundRef | None:
        return self.rounds[-2] if len(self.rounds) >= 2 else None


def overview(project: Project) -> Overview:
    with read_session(project.engine) as session:
        rows = dash_queries.succeeded_rounds(session, project.id)
        project_row = queries.get_project_by_id(session, project.id)
        classes = tuple(project_row.classes) if project_row is not None else ()
    rounds = tuple(RoundRef(id=int(r[0]), n_labels=int(r[1] or 0)) for r in rows)
    return Overview(rounds=rounds, classes=classes)


def label_version(project: Project) -> tuple[int, int]:
    """Changes whenever a label is added or withdrawn: the cache key of label-dependent data."""
    with read_session(project.engine) as session:
        return dash_queries.label_version(session, project.id)


# ---------------------------------------------------------------- 1. learning curves


@dataclass(frozen=True)
class LearningCurves:
    # columns: round_id, n_labels, member (-1 = ensemble), eval_source, n_eval, accuracy,
    # accuracy_se, nll, nll_se, brier, brier_se, ece
    curves: pd.DataFrame
    # columns: n_labels, accuracy, accuracy_se, nll, nll_se, ece, ece_se, repeats; None if no file
    simulation: pd.DataFrame | None
    simulation_files: tuple[str, ...] = ()


METRIC_COLUMNS = [
    "round_id",
    "n_labels",
    "member",
    "eval_source",
    "n_eval",
    "accuracy",
    "accuracy_se",
    "nll",
    "nll_se",
    "brier",
    "brier_se",
    "ece",
]


def learning_curves(project: Project) -> LearningCurves:
    with read_session(project.engine) as session:
        rows = dash_queries.metric_rows(session, project.id)
    curves = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    numeric = [c for c in METRIC_COLUMNS if c != "eval_source"]
    curves[numeric] = curves[numeric].apply(pd.to_numeric, errors="coerce")
    simulation, files = simulation_curve(project)
    return LearningCurves(curves=curves, simulation=simulation, simulation_files=files)


def simulation_dir(project: Project) -> Path:
    """Where `activelearn simulate` leaves its CSVs for a project."""
    return project.workspace.data_dir / "simulations" / f"project-{project.id}"


def simulation_curve(
    project: Project, *, strategy: str = SIMULATION_STRATEGY
) -> tuple[pd.DataFrame | None, tuple[str, ...]]:
    """Mean and standard error over repeats, per n_labels, of one strategy in the project's
    simulation CSVs (strategy, repeat, round, n_labels, test_accuracy, test_nll, test_ece, ...).

    Unreadable files or files without those columns are skipped: a half-written CSV from a
    running simulation must not break the page.
    """
    folder = simulation_dir(project)
    if not folder.is_dir():
        return None, ()
    frames: list[pd.DataFrame] = []
    used: list[str] = []
    wanted = {"strategy", "n_labels", "test_accuracy", "test_nll", "test_ece"}
    for path in sorted(folder.glob("*.csv")):
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.ParserError) as error:
            log.warning("skipping simulation file %s: %s", path, error)
            continue
        if not wanted.issubset(frame.columns):
            continue
        frame = frame[frame["strategy"].astype(str) == strategy]
        if not frame.empty:
            frames.append(frame)
            used.append(path.name)
    if not frames:
        return None, tuple(used)
    data = pd.concat(frames, ignore_index=True)
    summary = simulation_summary(data)
    return summary, tuple(used)


def simulation_summary(data: pd.DataFrame) -> pd.DataFrame:
    """Per n_labels: mean and standard error (over repeats) of test accuracy, NLL and ECE."""
    out: dict[str, list[float]] = {"n_labels": [], "repeats": []}
    for metric in METRICS:
        out[metric] = []
        out[f"{metric}_se"] = []
    for n_labels, rows in data.groupby("n_labels", sort=True):
        out["n_labels"].append(float(n_labels))
        out["repeats"].append(float(len(rows)))
        for metric in METRICS:
            values = pd.to_numeric(rows[f"test_{metric}"], errors="coerce").dropna().to_numpy()
            out[metric].append(float(values.mean()) if values.size else math.nan)
            se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0
            out[f"{metric}_se"].append(se)
    return pd.DataFrame(out)


# ---------------------------------------------------------------- 2. training curves


def training_curves(project: Project, round_id: int) -> pd.DataFrame:
    """columns member, epoch, train_loss, val_loss of one round."""
    with read_session(project.engine) as session:
        _check_round(session, project, round_id)
        rows = dash_queries.training_epochs(session, round_id)
    return pd.DataFrame(rows, columns=["member", "epoch", "train_loss", "val_loss"])


def _check_round(session: Session, project: Project, round_id: int) -> None:
    from db.rounds import get_round

    row = get_round(session, round_id)
    if row is None or row.project_id != project.id:
        raise UnknownTask(f"no round {round_id} in project {project.name!r}")


# ---------------------------------------------------------------- 3. and 5. the pool


@dataclass(frozen=True)
class ScoreHistogram:
    score: str
    edges: tuple[float, ...]  # (B + 1,)
    latest: tuple[int, ...]  # (B,)
    previous: tuple[int, ...] | None  # (B,) on the same edges


POINT_FIELDS = (
    "sample_id",
    "path",
    "mutual_information",
    "predictive_entropy",
    "expected_entropy",
    "variance",
    "predicted_class",
    "confidence",
)
_SCORE_ARRAYS = dash_queries.POOL_SCORE_COLUMNS  # the columns of pool_score_columns


@dataclass(frozen=True)
class PoolView:
    round_id: int
    previous_id: int | None
    n_pool: int
    histograms: dict[str, ScoreHistogram]
    # POINT_FIELDS columns: SCATTER_POINTS pool samples drawn at random (seeded by the round id,
    # so a round always shows the same points) plus the SCATTER_TOP by mutual information
    points: pd.DataFrame
    top_mutual_information: pd.DataFrame  # the GALLERY_SIZE most informative (same columns)
    # "Possibly out of distribution": the highest predictive entropy (total uncertainty) among
    # samples whose mutual information is at least the pool's 90th percentile, i.e. the members
    # disagree AND the mean prediction is flat. A proxy, not a detector: the UI says so.
    out_of_distribution: pd.DataFrame
    ood_mi_floor: float | None
    # Abstention on the pool by confidence threshold (CONFIDENCE_BINS + 1 thresholds 0..1)
    thresholds: tuple[float, ...]
    abstained_share: tuple[float, ...]
    expected_accuracy: tuple[float | None, ...]
    # For the stopping advice: the share of the pool with mutual information above
    # `informative_threshold` (StoppingThresholds.mutual_information), and the share of samples
    # in both rounds' pools whose predicted class the latest round did not change (None without
    # a previous round).
    informative_share: float | None
    stability: float | None
    # The pool's confidence distribution the abstention curve comes from: per bin of width
    # 1 / CONFIDENCE_BINS, the number of samples and the sum of their confidence. The slider
    # moves in steps of one bin, so the curve read from it is exact, not an approximation.
    confidence_counts: tuple[int, ...] = ()  # (CONFIDENCE_BINS,)
    confidence_sums: tuple[float, ...] = ()  # (CONFIDENCE_BINS,)
    informative_threshold: float | None = None


def _score_arrays(session: Session, round_id: int) -> dict[str, np.ndarray]:
    rows = dash_queries.pool_score_columns(session, round_id)
    # One C-level conversion of the (N, 7) rows; ids and classes are exact in float64.
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(_SCORE_ARRAYS))
    arrays = {
        name: np.ascontiguousarray(table[:, column])  # (N,)
        for column, name in enumerate(_SCORE_ARRAYS)
    }
    arrays["sample_id"] = arrays["sample_id"].astype(np.int64)
    arrays["predicted_class"] = arrays["predicted_class"].astype(np.int64)
    return arrays


def _top(values: np.ndarray, ids: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Positions of the k highest values (ties: lower sample id first), optionally within mask."""
    candidates = np.flatnonzero(mask) if mask is not None else np.arange(values.size)
    if candidates.size == 0:
        return candidates
    order = np.lexsort((ids[candidates], -values[candidates]))  # last key sorts first
    return candidates[order[:k]]


def _points_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A POINT_FIELDS frame from its columns. Both the fresh computation and a stored summary
    build their frames here, so the two give the same dtypes (an empty gallery included)."""
    frame = pd.DataFrame(
        {
            "sample_id": np.asarray(columns["sample_id"], dtype=np.int64),
            "path": [str(path) for path in columns["path"]],
        }
    )
    for name in POINT_FIELDS[2:]:
        dtype = np.int64 if name == "predicted_class" else np.float64
        frame[name] = np.asarray(columns[name], dtype=dtype)  # JSON null -> NaN
    return frame[list(POINT_FIELDS)]


def _frame(
    arrays: dict[str, np.ndarray], positions: np.ndarray, paths: dict[int, str]
) -> pd.DataFrame:
    ids = arrays["sample_id"][positions]
    columns: dict[str, Any] = {"sample_id": ids, "path": [paths.get(int(i), "") for i in ids]}
    for name in POINT_FIELDS[2:]:
        columns[name] = arrays[name][positions]
    return _points_frame(columns)


def _compute_pool_view(
    session: Session, round_id: int, previous_id: int | None, *, informative_threshold: float
) -> PoolView:
    """Every pool chart of a round from its scores and its predecessor's (two 100k-row reads
    at full scale: what the stored summary saves each visitor)."""
    latest = _score_arrays(session, round_id)
    previous = _score_arrays(session, previous_id) if previous_id is not None else None
    n_pool = int(latest["sample_id"].size)
    ids = latest["sample_id"]
    mi = latest["mutual_information"]

    rng = np.random.default_rng(round_id)
    sampled = (
        rng.choice(n_pool, size=SCATTER_POINTS, replace=False)
        if n_pool > SCATTER_POINTS
        else np.arange(n_pool)
    )
    scatter = np.union1d(sampled, _top(mi, ids, SCATTER_TOP))
    top_mi = _top(mi, ids, GALLERY_SIZE)
    mi_floor = float(np.quantile(mi, 0.9, method="lower")) if n_pool else None
    ood = (
        _top(latest["predictive_entropy"], ids, GALLERY_SIZE, mask=mi >= mi_floor)
        if mi_floor is not None
        else np.array([], dtype=np.int64)
    )
    wanted = np.unique(np.concatenate([scatter, top_mi, ood])).astype(np.int64)
    paths = dash_queries.sample_paths(session, [int(i) for i in ids[wanted]])

    histograms: dict[str, ScoreHistogram] = {}
    for score in HISTOGRAM_SCORES:
        values = [latest[score]] + ([previous[score]] if previous is not None else [])
        joined = np.concatenate(values)
        if joined.size == 0:
            continue
        low, high = float(joined.min()), float(joined.max())
        if high <= low:
            high = low + 1e-6
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
        counts = [np.histogram(v, bins=edges)[0] for v in values]
        histograms[score] = ScoreHistogram(
            score=score,
            edges=tuple(edges.tolist()),
            latest=tuple(int(c) for c in counts[0]),
            previous=tuple(int(c) for c in counts[1]) if previous is not None else None,
        )

    # per confidence bin: (count, sum of confidence)
    confidence = latest["confidence"]
    bin_index = np.clip((confidence * CONFIDENCE_BINS).astype(np.int64), 0, CONFIDENCE_BINS - 1)
    bin_counts = tuple(int(c) for c in np.bincount(bin_index, minlength=CONFIDENCE_BINS))
    bin_sums = tuple(
        float(s) for s in np.bincount(bin_index, weights=confidence, minlength=CONFIDENCE_BINS)
    )
    threshold_edges, abstained, expected = abstention_curve(bin_counts, bin_sums)

    stability = None
    if previous is not None:
        _, here, there = np.intersect1d(
            ids, previous["sample_id"], assume_unique=True, return_indices=True
        )
        if here.size:
            same = latest["predicted_class"][here] == previous["predicted_class"][there]
            stability = float(same.mean())

    return PoolView(
        round_id=round_id,
        previous_id=previous_id,
        n_pool=n_pool,
        histograms=histograms,
        points=_frame(latest, scatter, paths),
        top_mutual_information=_frame(latest, top_mi, paths),
        out_of_distribution=_frame(latest, ood, paths),
        ood_mi_floor=mi_floor,
        thresholds=threshold_edges,
        abstained_share=abstained,
        expected_accuracy=expected,
        informative_share=float((mi > informative_threshold).mean()) if n_pool else None,
        stability=stability,
        confidence_counts=bin_counts,
        confidence_sums=bin_sums,
        informative_threshold=informative_threshold,
    )


# A stored summary holds everything PoolView shows except the abstention curve, which is
# recomputed from the confidence profile. Bump the version whenever what is stored, or how it is
# computed (bins, scatter size, gallery rules), changes: older summaries are then recomputed.
POOL_SUMMARY_VERSION = 1


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or infinity (PostgreSQL rejects them): stored as null, read back as NaN.
    return value if value is not None and math.isfinite(value) else None


def _frame_to_json(frame: pd.DataFrame) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        "sample_id": [int(v) for v in frame["sample_id"].tolist()],
        "path": [str(v) for v in frame["path"].tolist()],
        "predicted_class": [int(v) for v in frame["predicted_class"].tolist()],
    }
    for name in POINT_FIELDS[2:]:
        if name != "predicted_class":
            columns[name] = [_finite(float(v)) for v in frame[name].tolist()]
    return columns


def pool_view_to_json(view: PoolView) -> dict[str, Any]:
    """The stored form of a pool view (plain JSON; floats round-trip exactly)."""
    return {
        "n_pool": view.n_pool,
        "histograms": {
            score: {
                "edges": [_finite(v) for v in hist.edges],
                "latest": list(hist.latest),
                "previous": None if hist.previous is None else list(hist.previous),
            }
            for score, hist in view.histograms.items()
        },
        "points": _frame_to_json(view.points),
        "top_mutual_information": _frame_to_json(view.top_mutual_information),
        "out_of_distribution": _frame_to_json(view.out_of_distribution),
        "ood_mi_floor": _finite(view.ood_mi_floor),
        "confidence_counts": list(view.confidence_counts),
        "confidence_sums": [_finite(v) for v in view.confidence_sums],
        "informative_threshold": view.informative_threshold,
        "informative_share": _finite(view.informative_share),
        "stability": _finite(view.stability),
    }


def pool_view_from_json(
    summary: dict[str, Any], *, round_id: int, previous_id: int | None
) -> PoolView:
    """A PoolView from its stored form; the abstention curve is recomputed from the profile."""
    counts = tuple(int(c) for c in summary["confidence_counts"])
    sums = tuple(float(s) for s in summary["confidence_sums"])
    thresholds, abstained, expected = abstention_curve(counts, sums)
    histograms = {
        score: ScoreHistogram(
            score=score,
            edges=tuple(float(v) for v in hist["edges"]),
            latest=tuple(int(c) for c in hist["latest"]),
            previous=None if hist["previous"] is None else tuple(int(c) for c in hist["previous"]),
        )
        for score, hist in summary["histograms"].items()
    }
    floor = summary["ood_mi_floor"]
    threshold = summary["informative_threshold"]
    return PoolView(
        round_id=round_id,
        previous_id=previous_id,
        n_pool=int(summary["n_pool"]),
        histograms=histograms,
        points=_points_frame(summary["points"]),
        top_mutual_information=_points_frame(summary["top_mutual_information"]),
        out_of_distribution=_points_frame(summary["out_of_distribution"]),
        ood_mi_floor=None if floor is None else float(floor),
        thresholds=thresholds,
        abstained_share=abstained,
        expected_accuracy=expected,
        informative_share=summary["informative_share"],
        stability=summary["stability"],
        confidence_counts=counts,
        confidence_sums=sums,
        informative_threshold=None if threshold is None else float(threshold),
    )


def _stored_view(
    session: Session, round_id: int, previous_id: int | None, informative_threshold: float
) -> PoolView | None:
    """The round's stored summary as a PoolView when it answers this question: same format
    version, compared with the same previous round, same informative threshold."""
    stored = dash_queries.pool_summary(session, round_id)
    if stored is None:
        return None
    version, stored_previous, summary = stored
    if version != POOL_SUMMARY_VERSION or stored_previous != previous_id:
        return None
    if summary.get("informative_threshold") != informative_threshold:
        return None
    try:
        return pool_view_from_json(summary, round_id=round_id, previous_id=previous_id)
    except (KeyError, TypeError, ValueError) as error:  # a damaged row is recomputed
        log.warning("ignoring the stored pool summary of round %s: %s", round_id, error)
        return None


def _save_pool_view(engine: Engine, view: PoolView) -> None:

    summary = pool_view_to_json(view)
    with_write_retry(
        engine,
        lambda session: dash_queries.save_pool_summary(
            session,
            view.round_id,
            previous_round_id=view.previous_id,
            version=POOL_SUMMARY_VERSION,
            summary=summary,
            now=utcnow(),
        ),
    )


def compute_pool_view(
    project: Project,
    round_id: int,
    previous_id: int | None = None,
    *,
    thresholds: StoppingThresholds | None = None,
) -> PoolView:
    """The pool charts of a round computed afresh from the scores, ignoring any stored summary."""
    limits = thresholds or StoppingThresholds()
    with read_session(project.engine) as session:
        _check_round(session, project, round_id)
        return _compute_pool_view(
            session, round_id, previous_id, informative_threshold=limits.mutual_information
        )


def pool_view(
    project: Project,
    round_id: int,
    previous_id: int | None = None,
    *,
    thresholds: StoppingThresholds | None = None,
) -> PoolView:
    """The pool charts of a round compared with `previous_id`.

    Read from the summary the worker stored when the round finished (a few hundred kB instead of
    two rounds of scores); computed from the scores, and stored for the next visitor, when there
    is none (rounds finished by an older version) or it compared with another round.
    """
    limits = thresholds or StoppingThresholds()
    with read_session(project.engine) as session:
        _check_round(session, project, round_id)
        view = _stored_view(session, round_id, previous_id, limits.mutual_information)
        if view is not None:
            return view
        view = _compute_pool_view(
            session, round_id, previous_id, informative_threshold=limits.mutual_information
        )
    if limits.mutual_information == StoppingThresholds().mutual_information:
        # Only the page's default question is kept; a custom threshold is answered, not stored.
        try:
            _save_pool_view(project.engine, view)
        except SQLAlchemyError as error:  # the page still shows the view; the next visit retries
            log.warning("could not store the pool summary of round %s: %s", round_id, error)
    return view


def store_pool_summary(engine: Engine, round_id: int) -> PoolView:
    """Compute a finished round's pool summary and store it: the rounds worker calls this once,
    right after the round succeeds, so the dashboard's first visitor reads instead of computing.

    The round is compared with the newest older succeeded round of its project, the one the
    dashboard shows beside it.
    """
    limits = StoppingThresholds()
    with read_session(engine) as session:
        previous_id = dash_queries.previous_succeeded_round(session, round_id)
        view = _compute_pool_view(
            session, round_id, previous_id, informative_threshold=limits.mutual_information
        )
    _save_pool_view(engine, view)
    return view


def backfill_pool_summaries(engine: Engine) -> list[int]:
    """Store the summary of each project's latest round that has none in the current format
    (rounds finished before summaries existed, or whose summary failed), so that the first
    dashboard visitor after an upgrade does not pay for it. Returns the rounds it stored."""
    with read_session(engine) as session:
        missing = [
            round_id
            for round_id in dash_queries.latest_succeeded_rounds(session)
            if dash_queries.pool_summary_version(session, round_id) != POOL_SUMMARY_VERSION
        ]
    for round_id in missing:
        store_pool_summary(engine, round_id)
    return missing


def abstention_curve(
    bin_counts: Sequence[int], bin_sums: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float | None, ...]]:
    """From per-bin counts and sums of confidence on [0, 1], for thresholds at the bin edges:
    the share of the pool abstained on (confidence below the threshold) and the expected accuracy
    on the rest (their mean confidence, which equals accuracy only for a calibrated model).
    """
    bins = len(bin_counts)
    counts = np.asarray(bin_counts, dtype=np.float64)
    sums = np.asarray(bin_sums, dtype=np.float64)
    total = counts.sum()
    # Kept at threshold edge k: bins k..B-1 (threshold k / B).
    kept_counts = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])
    kept_sums = np.concatenate([np.cumsum(sums[::-1])[::-1], [0.0]])
    thresholds = tuple(float(k / bins) for k in range(bins + 1))
    abstained = tuple(float(1 - kept / total) if total else 0.0 for kept in kept_counts)
    expected = tuple(
        float(s / n) if n > 0 else None for s, n in zip(kept_sums, kept_counts, strict=True)
    )
    return thresholds, abstained, expected


def abstention_at(view: PoolView, threshold: float) -> tuple[float, float | None]:
    """(share of the pool abstained on, expected accuracy on the rest) at a threshold, taken at
    the nearest bin edge at or below it."""
    index = int(np.clip(math.floor(threshold * CONFIDENCE_BINS + 1e-9), 0, CONFIDENCE_BINS))
    return view.abstained_share[index], view.expected_accuracy[index]


# ---------------------------------------------------------------- 4. and 6. evaluation details


@dataclass(frozen=True)
class RoundDetails:
    round_id: int
    eval_source: str | None
    n_eval: int
    ece: float | None
    reliability: dict[str, list[Any]]  # edges, confidence, accuracy, counts
    confusion: list[list[int]]  # rows: true class index, columns: predicted
    risk_coverage: dict[str, Any]  # coverage, risk, aurc
    eval_confidence: tuple[float, ...]  # (N_eval,)
    eval_correct: tuple[bool, ...]  # (N_eval,)


def round_details(project: Project, round_id: int) -> RoundDetails:
    with read_session(project.engine) as session:
        _check_round(session, project, round_id)
        ensemble = dash_queries.ensemble_metric(session, round_id)
    eval_source, n_eval, ece, stored = ensemble if ensemble is not None else (None, 0, None, None)
    details = dict(stored or {})
    predictions = details.get("eval_predictions") or {}
    return RoundDetails(
        round_id=round_id,
        eval_source=eval_source,
        n_eval=int(n_eval or 0),
        ece=float(ece) if ece is not None else None,
        reliability=dict(details.get("reliability") or {}),
        confusion=[list(map(int, row)) for row in details.get("confusion") or []],
        risk_coverage=dict(details.get("risk_coverage") or {}),
        eval_confidence=tuple(float(c) for c in predictions.get("confidence", [])),
        eval_correct=tuple(bool(c) for c in predictions.get("correct", [])),
    )


def eval_accuracy_above(details: RoundDetails, threshold: float) -> tuple[float | None, float]:
    """(accuracy, coverage) on the evaluation samples whose confidence is >= threshold."""
    confidence = np.asarray(details.eval_confidence, dtype=np.float64)
    correct = np.asarray(details.eval_correct, dtype=bool)
    if confidence.size == 0:
        return None, 0.0
    kept = confidence >= threshold
    coverage = float(kept.mean())
    return (float(correct[kept].mean()) if kept.any() else None), coverage


def ece_over_rounds(curves: pd.DataFrame) -> pd.DataFrame:
    """columns round_id, n_labels, ece of the ensemble rows."""
    ensemble = curves[curves["member"] == -1]
    return ensemble[["round_id", "n_labels", "ece"]].reset_index(drop=True)


# ---------------------------------------------------------------- 6. labels and people


@dataclass(frozen=True)
class LabelStats:
    per_class: pd.DataFrame  # label, split, count
    per_hour: pd.DataFrame  # hour, annotator, count
    annotators: tuple[str, ...]  # of the agreement matrix
    agreement: tuple[tuple[float | None, ...], ...]  # pairwise share of equal labels
    shared: tuple[tuple[int, ...], ...]  # pairwise count of samples both labeled
    n_multi: int  # samples with live labels from several annotators
    n_unanimous: int  # of which every annotator gave the same label


def label_stats(project: Project) -> LabelStats:
    with read_session(project.engine) as session:
        per_class = dash_queries.labels_per_class(session, project.id)
        per_hour = dash_queries.labels_per_hour(session, project.id)
        multi = dash_queries.multi_annotator_labels(session, project.id)
    annotators, agreement, shared, n_multi, n_unanimous = annotator_agreement(multi)
    return LabelStats(
        per_class=pd.DataFrame(per_class, columns=["label", "split", "count"]),
        per_hour=pd.DataFrame(per_hour, columns=["hour", "annotator", "count"]),
        annotators=annotators,
        agreement=agreement,
        shared=shared,
        n_multi=n_multi,
        n_unanimous=n_unanimous,
    )


def annotator_agreement(
    rows: list[tuple[int, str, str]],
) -> tuple[
    tuple[str, ...], tuple[tuple[float | None, ...], ...], tuple[tuple[int, ...], ...], int, int
]:
    """Pairwise percent agreement from (sample_id, annotator, label) rows.

    An annotator with two live labels on one sample counts with the newest (the last row).
    """
    by_sample: dict[int, dict[str, str]] = {}
    for sample_id, annotator, label in rows:
        by_sample.setdefault(sample_id, {})[annotator] = label
    by_sample = {s: labels for s, labels in by_sample.items() if len(labels) > 1}
    names = tuple(sorted({a for labels in by_sample.values() for a in labels}))
    index = {name: i for i, name in enumerate(names)}
    same = np.zeros((len(names), len(names)), dtype=np.int64)
    both = np.zeros((len(names), len(names)), dtype=np.int64)
    unanimous = 0
    for labels in by_sample.values():
        unanimous += len(set(labels.values())) == 1
        for a, b in itertools.combinations(sorted(labels), 2):
            i, j = index[a], index[b]
            both[i, j] += 1
            both[j, i] += 1
            if labels[a] == labels[b]:
                same[i, j] += 1
                same[j, i] += 1
    for i in range(len(names)):
        # The diagonal: an annotator agrees with themself on everything they shared with anyone.
        both[i, i] = int(both[i].sum())
        same[i, i] = both[i, i]
    agreement = tuple(
        tuple(float(same[i, j] / both[i, j]) if both[i, j] else None for j in range(len(names)))
        for i in range(len(names))
    )
    shared = tuple(tuple(int(v) for v in row) for row in both)
    return names, agreement, shared, len(by_sample), unanimous


# ---------------------------------------------------------------- 7. suspected label errors


@dataclass(frozen=True)
class SuspectedLabelError:
    sample_id: int
    path: str
    label: str
    predicted: str
    label_probability: float  # the ensemble's mean probability of the given label
    confidence: float  # the ensemble's probability of its own top class
    member_predictions: tuple[str, ...]  # each member's top class


def flag_label_errors(
    rows: list[tuple[Any, ...]],
    *,
    classes: tuple[str, ...] | list[str],
    max_label_probability: float = LABEL_ERROR_MAX_LABEL_PROBABILITY,
    min_confidence: float = LABEL_ERROR_MIN_CONFIDENCE,
) -> list[SuspectedLabelError]:
    """The rows (from dash_queries.confident_labeled_rows) whose label every member rejects.

    Flagged when: every member's top class differs from the label, the ensemble's mean
    probability of the label is below max_label_probability, and its confidence in its own top
    class is at least min_confidence. An in-loop stand-in for cross-validated label-error
    detection (the members saw these labels in training, so a flag here means the rest of the
    data outvoted the label, which is a strong hint). Most suspicious first.
    """
    index = {name: i for i, name in enumerate(classes)}
    found: list[SuspectedLabelError] = []
    for sample_id, path, label, predicted, confidence, mean_probs, member_preds in rows:
        label_index = index.get(str(label))
        if label_index is None or mean_probs is None or not member_preds:
            continue
        if float(confidence) < min_confidence or label_index >= len(mean_probs):
            continue
        label_probability = float(mean_probs[label_index])
        if label_probability >= max_label_probability:
            continue
        if any(int(p) == label_index for p in member_preds):
            continue
        found.append(
            SuspectedLabelError(
                sample_id=int(sample_id),
                path=str(path),
                label=str(label),
                predicted=_class_name(classes, int(predicted)),
                label_probability=label_probability,
                confidence=float(confidence),
                member_predictions=tuple(_class_name(classes, int(p)) for p in member_preds),
            )
        )
    found.sort(key=lambda e: (e.label_probability, -e.confidence, e.sample_id))
    return found


def _class_name(classes: tuple[str, ...] | list[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else f"class {index}"


def find_label_errors(
    project: Project,
    round_id: int,
    *,
    max_label_probability: float = LABEL_ERROR_MAX_LABEL_PROBABILITY,
    min_confidence: float = LABEL_ERROR_MIN_CONFIDENCE,
) -> list[SuspectedLabelError]:
    """Labeled samples of the round whose current label every member confidently rejects."""
    with read_session(project.engine) as session:
        _check_round(session, project, round_id)
        project_row = queries.get_project_by_id(session, project.id)
        classes = tuple(project_row.classes) if project_row is not None else ()
        # A sample predicted as its own label has that label's probability >= its confidence,
        # so it cannot be flagged while max_label_probability <= min_confidence: skip in SQL.
        rows = dash_queries.confident_labeled_rows(
            session,
            round_id,
            min_confidence=min_confidence,
            disagreeing_with=classes if max_label_probability <= min_confidence else None,
        )
    return flag_label_errors(
        rows,
        classes=classes,
        max_label_probability=max_label_probability,
        min_confidence=min_confidence,
    )


def send_back_for_review(project: Project, sample_id: int, *, by: str) -> int:
    """Withdraw every live label of a sample (kept as superseded history) so that it returns to
    the labeling queue; an audit sample goes back to the pool. Returns the labels withdrawn.

    The schema has no column for who withdrew a label, so `by` goes to the log.
    """
    from activelearn.services.workspace import validate_annotator

    name = validate_annotator(by)

    def work(session: Session) -> int:
        sample = queries.get_sample(session, int(sample_id))
        if sample is None or sample.project_id != project.id:
            raise UnknownTask(f"no sample {sample_id} in project {project.name!r}")
        withdrawn = dash_queries.supersede_live_annotations(session, sample.id, utcnow())
        queries.refresh_sample_label(session, sample.id)
        return withdrawn

    withdrawn = with_write_retry(project.engine, work)
    log.info(
        "sample %s of project %r sent back for re-review by %s (%d labels withdrawn)",
        sample_id,
        project.name,
        name,
        withdrawn,
    )
    return withdrawn


# ---------------------------------------------------------------- 8. stopping advice


@dataclass(frozen=True)
class StoppingThresholds:
    window: int = 4  # rounds the slope is fitted to
    keep_gain: float = 0.01  # accuracy per 100 labels at or above which labels clearly pay
    stop_gain: float = 0.002  # below this the curve counts as flat
    mutual_information: float = 0.1  # nats: a pool sample above this is still informative
    informative_share: float = 0.02  # at most this share of the pool informative to stop
    stability: float = 0.99  # at least this share of predictions unchanged to stop


@dataclass(frozen=True)
class StoppingAdvice:
    verdict: str  # "keep labeling" | "diminishing returns" | "stop"
    message: str  # plain words for a project lead
    reasons: tuple[str, ...]
    n_rounds: int
    gain_per_100: float | None  # accuracy gained per 100 labels over the last rounds
    latest_accuracy: float | None
    latest_accuracy_se: float | None
    informative_share: float | None  # share of the pool with MI above the threshold
    stability: float | None  # share of pool predictions unchanged since the previous round
    fit_n_labels: tuple[float, ...] = ()
    fit_accuracy: tuple[float, ...] = ()
    thresholds: StoppingThresholds = field(default_factory=StoppingThresholds)


def advise_stopping(
    curve: pd.DataFrame,
    *,
    informative_share: float | None,
    stability: float | None,
    pool_left: int | None = None,
    thresholds: StoppingThresholds | None = None,
) -> StoppingAdvice:
    """Keep labeling / diminishing returns / stop, from three signals:
    - the slope of the ensemble's accuracy against labels over the last `window` rounds
      (least squares), as accuracy gained per 100 labels;
    - the share of the pool whose mutual information is above a threshold (samples the members
      still disagree on, i.e. that a label would still teach);
    - round-to-round stability: the share of pool predictions the latest round did not change.

    curve: the ensemble's rows, columns n_labels, accuracy, accuracy_se, by round.
    """
    limits = thresholds or StoppingThresholds()
    rows = curve.dropna(subset=["accuracy"]).sort_values("n_labels")
    n_rounds = len(rows)
    latest_acc = float(rows["accuracy"].iloc[-1]) if n_rounds else None
    latest_se = (
        float(rows["accuracy_se"].iloc[-1])
        if n_rounds and "accuracy_se" in rows and pd.notna(rows["accuracy_se"].iloc[-1])
        else None
    )
    base = {
        "n_rounds": n_rounds,
        "latest_accuracy": latest_acc,
        "latest_accuracy_se": latest_se,
        "informative_share": informative_share,
        "stability": stability,
        "thresholds": limits,
    }
    if pool_left == 0:
        return StoppingAdvice(
            verdict="stop",
            message="Stop: every pool sample is labeled; there is nothing left to ask for.",
            reasons=("the pool is exhausted",),
            gain_per_100=None,
            **base,
        )
    recent = rows.tail(limits.window)
    x = recent["n_labels"].to_numpy(dtype=np.float64)
    y = recent["accuracy"].to_numpy(dtype=np.float64)
    if len(recent) < 2 or np.ptp(x) == 0:
        return StoppingAdvice(
            verdict="keep labeling",
            message=(
                "Keep labeling: it is too early to judge; the advice needs at least two "
                "finished rounds trained on different numbers of labels."
            ),
            reasons=(f"{n_rounds} round(s) with an accuracy so far",),
            gain_per_100=None,
            **base,
        )
    slope, intercept = np.polyfit(x, y, 1)
    gain = float(slope * 100)
    fit_x = (float(x.min()), float(x.max()))
    fit_y = tuple(float(slope * v + intercept) for v in fit_x)
    reasons = [
        f"accuracy rose {gain * 100:+.2f} percentage points per 100 labels over the last "
        f"{len(recent)} rounds"
    ]
    if informative_share is not None:
        reasons.append(
            f"{informative_share:.1%} of the pool has mutual information above "
            f"{limits.mutual_information} nats (members still disagree)"
        )
    if stability is not None:
        reasons.append(f"{stability:.1%} of pool predictions unchanged since the previous round")
    flat = gain < limits.stop_gain
    settled = (informative_share is None or informative_share <= limits.informative_share) and (
        stability is None or stability >= limits.stability
    )
    if gain >= limits.keep_gain:
        verdict = "keep labeling"
        message = (
            f"Keep labeling: each 100 labels still buy about {gain * 100:.1f} percentage points "
            "of accuracy."
        )
    elif flat and settled:
        verdict = "stop"
        message = (
            "Stop: accuracy has stopped improving, the members agree on almost all of the pool, "
            "and new rounds no longer change its predictions. More labels are unlikely to pay."
        )
    else:
        verdict = "diminishing returns"
        still = []
        if informative_share is not None and informative_share > limits.informative_share:
            still.append("the members still disagree on part of the pool")
        if stability is not None and stability < limits.stability:
            still.append("predictions still change between rounds")
        tail = f" ({'; '.join(still)})" if still else ""
        message = (
            f"Diminishing returns: each 100 labels now buy only about {gain * 100:.2f} "
            f"percentage points of accuracy{tail}. Consider stopping soon, or label only the "
            "top of the queue."
        )
    return StoppingAdvice(
        verdict=verdict,
        message=message,
        reasons=tuple(reasons),
        gain_per_100=gain,
        fit_n_labels=fit_x,
        fit_accuracy=fit_y,
        **base,
    )


def stopping_advice(
    project: Project,
    curves: pd.DataFrame,
    view: PoolView | None,
    *,
    thresholds: StoppingThresholds | None = None,
) -> StoppingAdvice:
    """Advice from the learning curves and the latest round's pool view (see `pool_view`).

    The informative-share threshold is the one the view was computed at, so the advice's
    reasons quote the threshold behind its figure.
    """
    limits = thresholds or StoppingThresholds()
    if view is not None and view.informative_threshold is not None:
        limits = replace(limits, mutual_information=view.informative_threshold)
    with read_session(project.engine) as session:
        counts = queries.sample_counts(session, project.id)
    ensemble = curves[curves["member"] == -1]
    return advise_stopping(
        ensemble,
        informative_share=view.informative_share if view is not None else None,
        stability=view.stability if view is not None else None,
        pool_left=counts.get(("pool", "open"), 0),
        thresholds=limits,
    )
