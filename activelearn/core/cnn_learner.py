"""The "cnn" learner: a deep ensemble of small CNNs (activelearn.core.ensemble), from scratch."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from activelearn.core.ensemble import Ensemble, EnsembleConfig
from activelearn.core.learner import (
    FitCallback,
    LearnerFit,
    LearnerInputs,
    LearnerSpec,
    PoolView,
)

MIN_TRAIN_STEPS = 100  # optimizer steps per round at least (epochs are raised for small sets)


class CnnLearner:
    """M independently seeded CNNs trained together; see activelearn.core.ensemble."""

    name = "cnn"
    inputs: LearnerInputs = "pixels"

    def __init__(self, spec: LearnerSpec) -> None:
        self.spec = spec

    def config(self, n_train: int) -> EnsembleConfig:
        """The ensemble trained on n_train labels (small sets get more epochs)."""
        spec = self.spec
        config = EnsembleConfig(
            members=spec.members,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            seed=spec.seed,
            device=spec.device,
            early_stopping=spec.early_stopping,
            augment=spec.augment,
            class_weighting=spec.class_weighting,
        )
        steps_per_epoch = math.ceil(max(n_train, 1) / config.batch_size)
        if steps_per_epoch * config.epochs < MIN_TRAIN_STEPS:
            # A fixed epoch count is a handful of updates on the first rounds' 20-30 labels: the
            # members would stay near their initialisation and agree on nothing worth measuring.
            epochs = min(math.ceil(MIN_TRAIN_STEPS / steps_per_epoch), 1000)
            config = replace(config, epochs=epochs)
        return config

    def planned_work(self, n_train: int) -> float:
        # A training image costs about 3 forward passes per member-epoch (forward + backward).
        return 3.0 * self.config(n_train).epochs * n_train

    def fit(
        self,
        x: Tensor | np.ndarray,
        y: Tensor,
        *,
        progress: FitCallback | None = None,
        pool: PoolView | None = None,  # not used: the CNNs learn from the labeled images only
    ) -> LearnerFit:
        ensemble = Ensemble(
            self.config(len(y)),
            in_channels=self.spec.in_channels,
            n_classes=self.spec.n_classes,
            image_size=self.spec.image_size,
        )
        history = ensemble.fit(torch.as_tensor(np.asarray(x)), y, progress=progress)
        return LearnerFit(model=ensemble, history=history)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> Ensemble:
        return Ensemble.load(path, device=device)
