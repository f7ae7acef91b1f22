"""Acquisition strategies: the one registry of what a project may rank its pool by.

A strategy turns the learner's output into a serving priority for every pool sample:

    priority(probs, k, generator) -> (N,) float64, higher = served first

`probs` is (M, N, C): M members' class probabilities for N pool samples over C classes.
A batch-aware strategy chooses its k-sample batch jointly and puts it, in selection order,
above every other sample (`lift_batch`); the rest keeps a score order so the queue never runs
dry. `Strategy.select(probs, k)` is the top k of that priority: the chosen indices, in serving
order. Randomised strategies draw only from `generator` (never global state).

Importing this module does not import torch (settings validation and the UI read the names and
labels); the functions import activelearn.core.acquisition when they first run.

To add a strategy: write its priority function here and add one `Strategy(...)` to `_ALL`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor

# A chosen batch sits above every score (scores are entropies/probabilities: at most a few).
BATCH_PRIORITY_BASE = 1e6

Priority = Callable[["Tensor", int, "torch.Generator | None"], "Tensor"]


@dataclass(frozen=True)
class Strategy:
    name: str  # stored in settings and on every round: never rename one
    label: str  # shown in the UI
    batch_aware: bool  # chooses its k samples jointly (uses the acquisition_batch setting)
    priority: Priority  # (probs (M, N, C), k, generator) -> (N,) float64

    def select(self, probs: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The k (at most N) indices to label next, in serving order. (M, N, C) -> (k,) long."""
        return _acquisition().top_k(self.priority(probs, k, generator), k)


def _acquisition() -> ModuleType:
    from activelearn.core import acquisition  # torch: loaded when a strategy first runs

    return acquisition


def _scorer(name: str) -> Priority:
    """Rank by an acquisition score (activelearn.core.acquisition.SCORERS); k is not used."""

    def priority(probs: Tensor, _k: int, _generator: torch.Generator | None) -> Tensor:
        import torch

        return _acquisition().get_scorer(name)(probs).to(torch.float64)

    return priority


def _random(probs: Tensor, _k: int, generator: torch.Generator | None) -> Tensor:
    import torch

    return torch.rand(probs.shape[1], generator=generator, dtype=torch.float64)


def lift_batch(rest: Tensor, chosen: Tensor) -> Tensor:
    """`rest` (N,) float64 with the `chosen` indices moved above everything, in their order."""
    import torch

    value = rest.clone()
    k = len(chosen)
    value[chosen] = BATCH_PRIORITY_BASE + (k - torch.arange(k, dtype=torch.float64))
    return value


def _mutual_information64(probs: Tensor) -> Tensor:
    import torch

    return _acquisition().mutual_information(probs.to(torch.float64))  # (N,) float64


def _batchbald(probs: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    chosen = _acquisition().batchbald(probs, k, generator=generator)
    return lift_batch(_mutual_information64(probs), chosen)


def _power_bald(probs: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    chosen = _acquisition().power_bald(probs, k, generator=generator)
    return lift_batch(_mutual_information64(probs), chosen)


def _balanced_bald(probs: Tensor, k: int, _generator: torch.Generator | None) -> Tensor:
    """Top mutual information, taken round-robin over the predicted classes.

    A plain top-k BALD batch often piles up on one confusable pair of classes; this batch
    takes the most uncertain sample of each predicted class in turn (classes visited by their
    best MI, highest first), so one batch covers the classes the learner is unsure about.
    Cheap (a sort), deterministic, and a class-balanced acquisition in the spirit of Bengar et
    al. 2022 ("Class-balanced active learning for image classification").
    """
    import torch

    mi = _mutual_information64(probs)  # (N,)
    predicted = probs.mean(0).argmax(-1)  # (N,)
    order = torch.sort(mi, descending=True, stable=True).indices  # (N,)
    queues: dict[int, list[int]] = {}
    for index in order.tolist():  # classes appear in the order of their best sample
        queues.setdefault(int(predicted[index]), []).append(index)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(k, len(order)):
        for queue in queues.values():
            if depth < len(queue) and len(chosen) < k:
                chosen.append(queue[depth])
        depth += 1
    return lift_batch(mi, torch.tensor(chosen, dtype=torch.long))


_MI, _ENTROPY, _VARIANCE = (
    _scorer(name) for name in ("mutual_information", "predictive_entropy", "predictive_variance")
)
_ALL = (
    Strategy("bald", "mutual information (BALD)", False, _MI),
    Strategy("mutual_information", "mutual information (BALD)", False, _MI),
    Strategy("entropy", "predictive entropy", False, _ENTROPY),
    Strategy("predictive_entropy", "predictive entropy", False, _ENTROPY),
    Strategy("expected_entropy", "expected entropy", False, _scorer("expected_entropy")),
    Strategy("variance", "predictive variance", False, _VARIANCE),
    Strategy("predictive_variance", "predictive variance", False, _VARIANCE),
    Strategy("margin", "smallest margin", False, _scorer("margin")),
    Strategy("least_confidence", "least confidence", False, _scorer("least_confidence")),
    Strategy("variation_ratio", "variation ratio", False, _scorer("variation_ratio")),
    Strategy("random", "random order", False, _random),
    Strategy("batchbald", "BatchBALD", True, _batchbald),
    Strategy("power_bald", "PowerBALD (mutual information with noise)", True, _power_bald),
    Strategy(
        "balanced_bald", "mutual information, balanced over predicted classes", True, _balanced_bald
    ),
)  # fmt: skip

STRATEGIES: dict[str, Strategy] = {strategy.name: strategy for strategy in _ALL}


def get_strategy(name: str) -> Strategy:
    """The strategy registered under `name`; ValueError listing the known names otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown acquisition strategy {name!r}; known: {', '.join(STRATEGIES)}"
        ) from None
