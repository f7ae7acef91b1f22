"""The score fields a round stores for every pool sample: the one list, with their labels.

Each is an (N,) figure computed from the learner's probabilities (M, N, C) by
activelearn.core.acquisition.uncertainty_summary; higher = more uncertain, except
`confidence`. The UI, the export, the queue's Task.scores and the dashboard read this list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreField:
    name: str  # the sample_scores column and the uncertainty_summary key
    label: str  # short text for tables and the label page
    axis: str  # chart axis title, with the unit


SCORE_FIELD_LIST: tuple[ScoreField, ...] = (
    ScoreField("mutual_information", "mutual information", "Mutual information (nats)"),
    ScoreField("predictive_entropy", "predictive entropy", "Predictive entropy (nats)"),
    ScoreField("expected_entropy", "expected entropy", "Expected entropy (nats)"),
    ScoreField("variance", "variance", "Predictive variance"),
    ScoreField("margin", "margin", "1 - margin"),
    ScoreField("confidence", "confidence", "Confidence"),
)
SCORE_FIELDS: tuple[str, ...] = tuple(field.name for field in SCORE_FIELD_LIST)
SCORE_LABELS: dict[str, str] = {field.name: field.label for field in SCORE_FIELD_LIST}
