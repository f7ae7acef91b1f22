"""Acquisition strategies: the one registry of what a project may rank its pool by.

A strategy turns the learner's output into a serving priority for every pool sample:

    priority(probs, k, generator) -> (N,) float64, higher = served first

`probs` is (M, N, C): M members' class probabilities for N pool samples over C classes.
A batch-aware strategy chooses its k-sample batch jointly and puts it, in selection order,
above every other sample (`lift_batch`); the rest keeps a score order so the queue never runs
dry. `Strategy.select(probs, k)` is the top k of that priority: the chosen indices, in serving
order. Randomised strategies draw only from `generator` (never global state).

The one call the pipeline makes is `Strategy.rank(probs | None, k, generator=, context=)` over
the whole pool: `context` (PoolContext) says which rows may be served (the rest are labeled) and
carries the pool's embeddings (N, D) when the project has them. Strategies that need more than
probabilities (typiclust, auto: `needs_features`) have a `ranker` and read the context; the
others rank the servable rows by `priority` alone. With no model yet (probs None, the cold
start) a probability strategy ranks at random. A Ranking carries a "why this sample" sentence
for each sample a strategy chose where it can say one.

Importing this module does not import torch (settings validation and the UI read the names and
labels); the functions import activelearn.core.acquisition / core.typicality when they first run.

To add a strategy: write its priority (or ranker) function here and add one `Strategy(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import Tensor

# A chosen batch sits above every score (scores are entropies/probabilities: at most a few).
BATCH_PRIORITY_BASE = 1e6

Priority = Callable[["Tensor", int, "torch.Generator | None"], "Tensor"]
RANDOM_REASON = "drawn at random: there is no model yet"


@dataclass(frozen=True)
class PoolContext:
    """What a strategy may look at besides the probabilities, over the same N pool rows.

    rankable (N,) bool: rows that may be served (the others are labeled: they cover clusters but
    are never chosen); features (N, D) float32 embeddings of the rows, or None; seed: for the
    strategy's own clustering (k-means seeding)."""

    rankable: Tensor
    n_classes: int
    features: Tensor | None = None
    seed: int = 0


@dataclass(frozen=True)
class Ranking:
    priority: Tensor  # (N,) float64, higher = served first; only rankable rows are meaningful
    reasons: dict[int, str] = field(default_factory=dict)  # row -> "why this sample"


Ranker = Callable[["Tensor | None", int, "torch.Generator | None", PoolContext], Ranking]


@dataclass(frozen=True)
class Strategy:
    name: str  # stored in settings and on every round: never rename one
    label: str  # shown in the UI
    batch_aware: bool  # chooses its k samples jointly (uses the acquisition_batch setting)
    priority: Priority | None  # (probs (M, N, C), k, generator) -> (N,) float64
    ranker: Ranker | None = None  # (probs | None, k, generator, context) -> Ranking
    needs_features: bool = False  # reads PoolContext.features (the pool's embeddings)

    def select(
        self,
        probs: Tensor,
        k: int,
        *,
        generator: torch.Generator | None = None,
        context: PoolContext | None = None,
    ) -> Tensor:
        """The k (at most N) indices to label next, in serving order. (M, N, C) -> (k,) long.
        A strategy that needs features needs the `context`."""
        if context is None and self.priority is not None:
            return _acquisition().top_k(self.priority(probs, k, generator), k)
        if context is None:
            raise ValueError(
                f"strategy {self.name!r} needs the pool's embeddings: pass a PoolContext"
            )
        ranking = self.rank(probs, k, context=context, generator=generator)
        return _acquisition().top_k(ranking.priority, k)

    def rank(
        self,
        probs: Tensor | None,
        k: int,
        *,
        context: PoolContext,
        generator: torch.Generator | None = None,
    ) -> Ranking:
        """Priorities of all N pool rows (M, N, C) | None -> Ranking; see the module docstring."""
        if self.needs_features and context.features is None:
            raise ValueError(
                f"strategy {self.name!r} needs the pool's embeddings (the representation stage)"
            )
        if self.ranker is not None:
            return self.ranker(probs, k, generator, context)
        assert self.priority is not None  # a Strategy has a priority or a ranker
        import torch

        rankable = context.rankable.to(torch.bool)
        priority = torch.full((len(rankable),), -float("inf"), dtype=torch.float64)
        positions = torch.nonzero(rankable).flatten()  # (R,)
        if len(positions) == 0:
            return Ranking(priority)
        if probs is None:  # the cold start: no model to score with
            priority[positions] = _random_order(len(positions), generator)
            chosen = positions[_acquisition().top_k(priority[positions], k)]
            return Ranking(priority, {int(i): RANDOM_REASON for i in chosen})
        priority[positions] = self.priority(probs[:, positions], k, generator)
        return Ranking(priority)


def _acquisition() -> ModuleType:
    from activelearn.core import acquisition  # torch: loaded when a strategy first runs

    return acquisition


def _typicality() -> ModuleType:
    from activelearn.core import typicality  # torch (and k-means): loaded on first use

    return typicality


def _scorer(name: str) -> Priority:
    """Rank by an acquisition score (activelearn.core.acquisition.SCORERS); k is not used."""

    def priority(probs: Tensor, _k: int, _generator: torch.Generator | None) -> Tensor:
        import torch

        return _acquisition().get_scorer(name)(probs).to(torch.float64)

    return priority


def _random(probs: Tensor, _k: int, generator: torch.Generator | None) -> Tensor:
    return _random_order(probs.shape[1], generator)


def _random_order(n: int, generator: torch.Generator | None) -> Tensor:
    import torch

    return torch.rand(n, generator=generator, dtype=torch.float64)


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


def _from_selection(
    probs: Tensor | None,
    generator: torch.Generator | None,
    context: PoolContext,
    select: Callable[[Any], Any],  # core.typicality: SelectionContext -> Selection
    k: int,
) -> Ranking:
    """A core.typicality selector's picks lifted above the rest (mutual information with a
    model, a random order without), with the selector's sentence for each pick."""
    import torch

    typicality = _typicality()
    rankable = context.rankable.to(torch.bool)
    selection = select(
        typicality.SelectionContext(
            embeddings=context.features,
            labeled=~rankable,
            count=k,
            n_classes=context.n_classes,
            seed=context.seed,
            probs=probs,
        )
    )
    n = len(rankable)
    rest = _mutual_information64(probs) if probs is not None else _random_order(n, generator)
    chosen = torch.tensor(selection.indices, dtype=torch.long)
    return Ranking(
        lift_batch(rest, chosen), dict(zip(selection.indices, selection.reasons, strict=True))
    )


def _typiclust(
    probs: Tensor | None, k: int, generator: torch.Generator | None, context: PoolContext
) -> Ranking:
    """TypiClust (Hacohen et al. 2022): the most typical sample of the least-labeled clusters of
    the pool's embeddings (activelearn.core.typicality.typiclust_select)."""
    return _from_selection(probs, generator, context, _typicality().typiclust_select, k)


def _auto(
    probs: Tensor | None, k: int, generator: torch.Generator | None, context: PoolContext
) -> Ranking:
    """TypiClust while there is no model or fewer than 3 labels per class, then BALD with one
    pick per k-means cluster (activelearn.core.typicality.auto_select)."""
    return _from_selection(probs, generator, context, _typicality().auto_select, k)


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
    Strategy(
        "typiclust", "most typical of the least-labeled clusters (TypiClust)", True, None,
        ranker=_typiclust, needs_features=True,
    ),
    Strategy(
        "auto", "typical samples first, then mutual information per cluster", True, None,
        ranker=_auto, needs_features=True,
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
