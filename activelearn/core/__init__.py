"""Pure ML over tensors: the learners (a deep ensemble of CNNs), acquisition, strategies, metrics.

Nothing here knows the database, the UI or the rest of activelearn. The re-exports below load
on first use, so that the torch-free modules (strategies, learner, learners) stay importable
without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "SCORERS": "activelearn.core.acquisition",
    "get_scorer": "activelearn.core.acquisition",
    "Ensemble": "activelearn.core.ensemble",
    "EnsembleConfig": "activelearn.core.ensemble",
    "FitHistory": "activelearn.core.learner",
    "FitProgress": "activelearn.core.learner",
    "Learner": "activelearn.core.learner",
    "LearnerSpec": "activelearn.core.learner",
    "STRATEGIES": "activelearn.core.strategies",
    "Strategy": "activelearn.core.strategies",
    "get_strategy": "activelearn.core.strategies",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'activelearn.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS)
