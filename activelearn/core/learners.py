"""The learner registry: a project's `learner` setting names one of these.

To add a learner: write a module with a class that satisfies activelearn.core.learner.Learner
(constructed from a LearnerSpec) and has a `load(path, *, device)` classmethod returning its
fitted model, then add one entry to LEARNERS below.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from activelearn.core.learner import FittedModel, Learner, LearnerSpec

DEFAULT_LEARNER = "embedding"  # heads on the pool's embeddings (benchmarks/label_efficiency.md)


def _cnn() -> Any:
    from activelearn.core.cnn_learner import CnnLearner  # torch: only when a learner is used

    return CnnLearner


def _embedding() -> Any:
    from activelearn.core.embedding_fit import EmbeddingFitLearner  # torch: as above

    return EmbeddingFitLearner


# name -> a function returning the learner class (imported on first use: keeps torch out of
# the settings validation and the UI, which only read the names).
LEARNERS: dict[str, Callable[[], Any]] = {
    "cnn": _cnn,
    "embedding": _embedding,  # heads on the representation stage's embeddings
}


def learner_class(name: str) -> Any:
    try:
        return LEARNERS[name]()
    except KeyError:
        raise ValueError(f"unknown learner {name!r}; known: {', '.join(LEARNERS)}") from None


def learner_inputs(name: str) -> str:
    """What learner `name` consumes: "pixels" or "embeddings" (activelearn.core.learner)."""
    return str(learner_class(name).inputs)


def make_learner(name: str, spec: LearnerSpec) -> Learner:
    """A fresh learner `name` for `spec`."""
    return learner_class(name)(spec)


def load_fitted(path: str | Path, *, device: str = "auto") -> FittedModel:
    """The fitted model saved in checkpoint folder `path`, by the learner its config names."""
    config = Path(path) / "config.json"
    name = DEFAULT_LEARNER
    if config.is_file():  # absent: the learner's own loader says what is missing
        name = json.loads(config.read_text()).get("learner", DEFAULT_LEARNER)
    return learner_class(name).load(path, device=device)
