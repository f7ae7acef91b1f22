"""Pure ML over tensors: the deep ensemble, acquisition functions and metrics."""

from activelearn.core.acquisition import SCORERS, STRATEGIES, get_scorer, select
from activelearn.core.ensemble import Ensemble, EnsembleConfig, FitHistory, FitProgress
from activelearn.core.scoring import PoolScores, score_pool

__all__ = [
    "SCORERS",
    "STRATEGIES",
    "Ensemble",
    "EnsembleConfig",
    "FitHistory",
    "FitProgress",
    "PoolScores",
    "get_scorer",
    "score_pool",
    "select",
]
