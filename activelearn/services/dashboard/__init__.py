"""Data for the uncertainty dashboard: small frozen records and DataFrames, one call per section.

The heavy lifting is SQL aggregation in db.dashboard; this module turns rows into plain data for
activelearn.ui.charts and holds the judgement calls, each documented where it is made:
- which labeled samples are suspected label errors (`rank_label_issues`, out of sample),
- which pool samples are shown as possibly out of distribution (`pool_view`),
- the stopping advice (`advise_stopping`).
Sections: common (overview), curves, pool, evaluation, people, label_errors, stopping.
Every function reads one round (or the labels) and is cheap to cache per round in the UI.
The pool charts, the one part that would read 100,000 score rows per round, are computed once
when a round succeeds (`store_pool_summary`, called by the rounds worker) and stored in the
database; `pool_view` reads that summary and computes it only where it is missing.
"""

from __future__ import annotations

from activelearn.services.dashboard.common import (
    CONFIDENCE_BINS,
    GALLERY_SIZE,
    HISTOGRAM_BINS,
    HISTOGRAM_SCORES,
    LABEL_ISSUE_MIN_SCORE,
    METRICS,
    SCATTER_POINTS,
    SCATTER_TOP,
    SIMULATION_STRATEGY,
    Overview,
    RoundRef,
    StoppingThresholds,
    label_version,
    overview,
)
from activelearn.services.dashboard.curves import (
    METRIC_COLUMNS,
    LearningCurves,
    learning_curves,
    simulation_curve,
    simulation_dir,
    simulation_summary,
    training_curves,
)
from activelearn.services.dashboard.embedding_map import EmbeddingMap, embedding_map
from activelearn.services.dashboard.evaluation import (
    RoundDetails,
    ece_over_rounds,
    eval_accuracy_above,
    round_details,
)
from activelearn.services.dashboard.label_errors import (
    SuspectedLabelError,
    find_label_errors,
    label_issues,
    rank_label_issues,
)
from activelearn.services.dashboard.people import (
    LabelStats,
    annotator_agreement,
    label_stats,
)
from activelearn.services.dashboard.pool import (
    POINT_FIELDS,
    POOL_SUMMARY_VERSION,
    PoolView,
    ScoreHistogram,
    abstention_at,
    abstention_curve,
    backfill_pool_summaries,
    compute_pool_view,
    pool_view,
    pool_view_from_json,
    pool_view_to_json,
    store_pool_summary,
)
from activelearn.services.dashboard.stopping import (
    StoppingAdvice,
    advise_stopping,
    stopping_advice,
)
from activelearn.services.review import send_back_for_review

__all__ = [
    "CONFIDENCE_BINS",
    "GALLERY_SIZE",
    "HISTOGRAM_BINS",
    "HISTOGRAM_SCORES",
    "LABEL_ISSUE_MIN_SCORE",
    "METRICS",
    "METRIC_COLUMNS",
    "POINT_FIELDS",
    "POOL_SUMMARY_VERSION",
    "SCATTER_POINTS",
    "SCATTER_TOP",
    "SIMULATION_STRATEGY",
    "EmbeddingMap",
    "LabelStats",
    "LearningCurves",
    "Overview",
    "PoolView",
    "RoundDetails",
    "RoundRef",
    "ScoreHistogram",
    "StoppingAdvice",
    "StoppingThresholds",
    "SuspectedLabelError",
    "abstention_at",
    "abstention_curve",
    "advise_stopping",
    "annotator_agreement",
    "backfill_pool_summaries",
    "compute_pool_view",
    "ece_over_rounds",
    "embedding_map",
    "eval_accuracy_above",
    "find_label_errors",
    "label_issues",
    "label_stats",
    "label_version",
    "learning_curves",
    "overview",
    "pool_view",
    "pool_view_from_json",
    "pool_view_to_json",
    "rank_label_issues",
    "round_details",
    "send_back_for_review",
    "simulation_curve",
    "simulation_dir",
    "simulation_summary",
    "stopping_advice",
    "store_pool_summary",
    "training_curves",
]
