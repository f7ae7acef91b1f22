"""Dashboard section 8: whether labeling more is still worth it (stopping advice)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from activelearn.services.dashboard.common import StoppingThresholds
from activelearn.services.dashboard.pool import PoolView
from activelearn.types import SampleSplit, SampleStatus
from db import queries
from db.engine import read_session

if TYPE_CHECKING:
    from activelearn.services.workspace import Project


# ---------------------------------------------------------------- 8. stopping advice


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
        pool_left=counts.get((SampleSplit.POOL, SampleStatus.OPEN), 0),
        thresholds=limits,
    )
