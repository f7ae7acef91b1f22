"""The learner seam: what a round trains and scores with, whatever the model behind it.

    Learner.inputs: "pixels" | "embeddings"      what the learner consumes (x below)
    Learner.fit(x (L, ...), labels (L,) long, pool=PoolView | None) -> LearnerFit
    LearnerFit.model.predict_proba(x (N, ...)) -> probs (M, N, K) float32 on the CPU

x is pixels (N, C, S, S) uint8 for a "pixels" learner and per-sample embeddings (N, D) float32
(the representation stage's) for an "embeddings" learner; the caller hands each learner the kind
it declares, never asking which learner it is. `pool` is the whole pool in that same kind, for
learners that learn from the unlabeled images too (label spreading over the pool's kNN graph);
such a learner may return the pool's probabilities it computed anyway (LearnerFit.pool_probs).
M is the number of members (an ensemble's size; 1 for a single model), N the number of
images, K the number of classes. Every acquisition strategy and metric reads only these
probabilities, so nothing downstream knows which learner produced them. `fit` calls
`progress` every few batches; an exception raised by `progress` propagates out of `fit` (that
is how a running round is cancelled). A fitted model saves itself into a checkpoint folder
whose config.json names its learner, and activelearn.core.learners.load_fitted reads it back.

Importing this module does not import torch (the settings and the UI read learner names).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class FitProgress:
    """Passed to the `progress` callback every few batches and at the end of every epoch."""

    epoch: int  # 1-based
    epochs: int
    step: int  # batches done in this epoch
    steps: int
    losses: tuple[float, ...]  # running mean train loss of this epoch per member (len M)


@dataclass(frozen=True)
class FitHistory:
    train_loss: list[list[float]]  # [member][epoch]
    val_loss: list[list[float]] | None  # [member][epoch]; None without early stopping
    epochs_run: int
    seconds: float
    device: str
    best_epoch: list[int] | None = field(default=None)  # [member], 1-based; early stopping only
    graph_replays: int = 0  # training steps replayed from a captured CUDA graph


FitCallback = Callable[[FitProgress], None]

LearnerInputs = Literal["pixels", "embeddings"]  # what a learner's x is (Learner.inputs)


@dataclass(frozen=True)
class PoolView:
    """The whole pool in the learner's input kind (pixels (N, C, S, S) or embeddings (N, D)).

    train_index (L,) long: row i of fit's x is pool row train_index[i]; None when the training
    rows are not among the pool's rows (a learner that needs them in its graph adds them)."""

    inputs: Tensor
    train_index: Tensor | None = None


@dataclass(frozen=True)
class LearnerSpec:
    """What every learner is told: the data's shape and the project's training settings."""

    n_classes: int
    in_channels: int
    image_size: int
    members: int = 5
    epochs: int = 20
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    early_stopping: bool = False
    augment: bool = False
    class_weighting: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # learner-specific extras


class FittedModel(Protocol):
    """A trained model of M members (M = 1 for a single model)."""

    members: int
    device: torch.device

    def predict_proba(self, x: Tensor | np.ndarray) -> Tensor:
        """Each member's class probabilities: x (N, C, S, S) -> (M, N, K) float32 on the CPU."""
        ...

    def save(self, path: str | Path) -> None:
        """Write a checkpoint folder (safetensors + config.json naming the learner; no pickle)."""
        ...


@dataclass(frozen=True)
class LearnerFit:
    model: FittedModel
    history: FitHistory  # per-member training curves (M lists)
    # (M, N_pool, K): the PoolView's probabilities when fitting produced them (a transductive
    # learner's own predictions for its graph's nodes); None: predict the pool with the model.
    pool_probs: Tensor | None = None


class Learner(Protocol):
    """Builds a fresh model from labeled images, every round from scratch."""

    spec: LearnerSpec
    inputs: LearnerInputs  # what `fit` and `predict_proba` take as x

    def planned_work(self, n_train: int) -> float:
        """Rough cost of `fit` on n_train images, in image forward passes (progress shares)."""
        ...

    def fit(
        self,
        x: Tensor | np.ndarray,
        y: Tensor,
        *,
        progress: FitCallback | None = None,
        pool: PoolView | None = None,
    ) -> LearnerFit:
        """Train on x (L, ...) of the declared input kind and y (L,) class indices; `pool`, when
        given, is the whole pool in the same kind (a learner may ignore it); `progress` may
        raise."""
        ...
