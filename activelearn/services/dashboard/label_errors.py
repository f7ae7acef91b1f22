"""Dashboard section 7: labeled samples the ensemble confidently disagrees with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from activelearn.services.dashboard.common import (
    LABEL_ERROR_MAX_LABEL_PROBABILITY,
    LABEL_ERROR_MIN_CONFIDENCE,
    check_round,
)
from db import dashboard as dash_queries
from db import queries
from db.engine import read_session

if TYPE_CHECKING:
    from activelearn.services.workspace import Project


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
        check_round(session, project, round_id)
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
