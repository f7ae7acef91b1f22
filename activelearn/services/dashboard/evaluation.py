"""Dashboard sections 4 and 6: a round's evaluation (calibration, confusion, risk-coverage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from activelearn.services.dashboard.common import check_round
from db import dashboard as dash_queries
from db.engine import read_session

if TYPE_CHECKING:
    from activelearn.services.workspace import Project


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
        check_round(session, project, round_id)
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
