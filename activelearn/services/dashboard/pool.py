"""Dashboard sections 3 and 5: the pool's uncertainty (histograms, scatter, galleries) and
abstention; computed once per round when it succeeds (store_pool_summary) and stored."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from activelearn.clock import utcnow
from activelearn.services.dashboard.common import (
    CONFIDENCE_BINS,
    GALLERY_SIZE,
    HISTOGRAM_BINS,
    HISTOGRAM_SCORES,
    SCATTER_POINTS,
    SCATTER_TOP,
    StoppingThresholds,
    check_round,
    log,
)
from db import dashboard as dash_queries
from db.engine import read_session, with_write_retry

if TYPE_CHECKING:
    from activelearn.services.workspace import Project


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
    "ood_score",  # NaN for rounds before the OOD score
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
    # "Possibly out of distribution": the highest ood_score (services.honesty; ood_source
    # "ood_score"). Rounds stored before it: the highest predictive entropy among samples whose
    # mutual information is at least the pool's 90th percentile (ood_source "proxy").
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
    ood_source: str = "ood_score"  # what out_of_distribution is ranked by: ood_score | proxy


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
    scored = np.isfinite(latest["ood_score"])
    if scored.any():
        ood_source = "ood_score"
        ood = _top(np.nan_to_num(latest["ood_score"], nan=-1.0), ids, GALLERY_SIZE, mask=scored)
    else:
        ood_source = "proxy"
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
        ood_source=ood_source,
    )


# A stored summary holds everything PoolView shows except the abstention curve, which is
# recomputed from the confidence profile. Bump the version whenever what is stored, or how it is
# computed (bins, scatter size, gallery rules), changes: older summaries are then recomputed.
POOL_SUMMARY_VERSION = 2  # 2: ood_score column and gallery


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
        "ood_source": view.ood_source,
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
        ood_source=str(summary.get("ood_source", "proxy")),
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
        check_round(session, project, round_id)
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
        check_round(session, project, round_id)
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
