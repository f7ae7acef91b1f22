"""Out-of-sample judgement of given labels: which labels are probably wrong, and what instead.

A model cannot judge the labels it trained on: a head (or a CNN) fits its training labels, so a
wrong label is never confidently rejected. Every label here is judged only by models that never
saw it (Northcutt et al. 2021, "Confident learning", sec. 4: out-of-sample predicted
probabilities), either
- K-fold: the labeled set is split into K class-stratified folds and the embedding learner is
  fit on K-1 of them to predict the held-out one (`out_of_sample_probs`), or
- out-of-bag: members of an ensemble trained on bootstrap samples, each label judged by the
  mean of the members whose bootstrap sample missed it (`out_of_bag_probs`).
The probabilities are then ranked by cleanlab (`rank_label_issues`): score = 1 - quality, so
higher = more likely wrong; the flagged set is confident learning's `find_label_issues`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from activelearn.core.embedding_learner import EmbeddingLearner
from activelearn.core.knn_graph import PoolGraph

__all__ = [
    "RANKING_METHODS",
    "LabelIssues",
    "find_label_issues",
    "out_of_bag_probs",
    "out_of_sample_probs",
    "rank_label_issues",
    "stratified_folds",
]

# cleanlab.rank's label quality scores; each is in [0, 1], higher = label more likely right.
RANKING_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


@dataclass(frozen=True)
class LabelIssues:
    """The judgement of N given labels.

    score (N,) float64: 1 - cleanlab's label quality of the out-of-sample probabilities, in
      [0, 1], higher = more likely wrong (self_confidence: 1 - p(given label)); NaN where the
      label could not be judged (no model without it, or no other label of its class).
    suggested_label (N,) int64: the out-of-sample argmax (-1 where not judged).
    flagged (N,) bool: confident learning's issue set (prune_by_noise_rate); never unjudged.
    probs (N, C) float64: the out-of-sample probabilities judged (NaN rows where not judged).
    method: the cleanlab ranking method behind score.
    """

    score: Tensor
    suggested_label: Tensor
    flagged: Tensor
    probs: Tensor
    method: str

    @property
    def judged(self) -> Tensor:
        """(N,) bool: labels that have a score."""
        return ~torch.isnan(self.score)

    def ranked(self) -> Tensor:
        """Indices of the judged labels, highest score first (ties: lower index first)."""
        index = torch.nonzero(self.judged).flatten()
        order = torch.sort(self.score[index], descending=True, stable=True).indices
        return index[order]

    def top(self, k: int) -> Tensor:
        """The k judged labels most likely wrong (fewer if fewer are judged)."""
        return self.ranked()[:k]


def stratified_folds(labels: Tensor | np.ndarray, folds: int, *, seed: int) -> Tensor:
    """(N,) labels -> (N,) int64 fold of each label in [0, folds).

    Each class's members are shuffled and dealt round-robin from a random starting fold, so a
    class with n >= 2 labels has labels in min(n, folds) folds: every one of its labels has
    another of its class in its training part.
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if folds < 2:
        raise ValueError(f"need at least 2 folds; got {folds}")
    gen = torch.Generator().manual_seed(seed)
    fold = torch.empty_like(y)
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        start = int(torch.randint(folds, (1,), generator=gen))
        fold[members] = (torch.arange(len(members)) + start) % folds
    return fold


def out_of_sample_probs(
    features: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    n_classes: int,
    folds: int = 5,
    seed: int = 0,
    learner: EmbeddingLearner | None = None,
    pool: PoolGraph | None = None,
    pool_index: Tensor | np.ndarray | None = None,
    members_per_fold: int = 1,
) -> Tensor:
    """K-fold out-of-sample probabilities of the labeled set: (N, D), (N,) -> (N, C) float64.

    Each fold is predicted by `members_per_fold` heads that learnt from the other folds only:
    all folds' heads are the members of one fit of the embedding learner (its config, with
    members = folds * members_per_fold), each member's labels masked to its training folds,
    which costs about one round's fit instead of K. With `pool` (the pool's kNN graph) and
    `pool_index` ((N,) each labeled row's node in it), a member also spreads its training
    labels over the pool: a held-out node's own label is never one of its seeds, so it is still
    judged out of sample. Rows of a label that is the only one of its class are NaN (no model
    could have learnt its class without it).
    On the demo (benchmarks/honesty.md, 300 labels, 5% flipped) the top 15 issues held 89% of
    the planted errors with the pool graph and 72% with the heads alone.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"need (N, D) features and (N,) labels; got {tuple(x.shape)}, {y.shape}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    if (pool is None) != (pool_index is None):
        raise ValueError("pass both pool and pool_index, or neither")
    if members_per_fold < 1:
        raise ValueError(f"members_per_fold must be at least 1; got {members_per_fold}")
    index = None if pool_index is None else torch.as_tensor(np.asarray(pool_index)).long()
    if index is not None and index.shape != y.shape:
        raise ValueError(f"pool_index must be (N,) = {tuple(y.shape)}; got {tuple(index.shape)}")
    probs = torch.full((len(y), n_classes), float("nan"), dtype=torch.float64)
    fold = stratified_folds(y, folds, seed=seed)
    used = [f for f in range(folds) if (fold == f).any() and (fold != f).any()]
    if used:
        base = (learner or EmbeddingLearner()).config
        judges = EmbeddingLearner(replace(base, members=len(used) * members_per_fold))
        member_fold = torch.tensor(used).repeat_interleave(members_per_fold)  # (M,)
        model = judges.fit(
            x,
            y,
            n_classes=n_classes,
            seed=seed * 1009,
            pool=pool,
            pool_index=index,
            label_masks=fold.unsqueeze(0) != member_fold.unsqueeze(1),  # (M, N)
        )
        member_probs = model.predict_proba(x)  # (M, N, C)
        for f in used:
            held = fold == f
            probs[held] = member_probs[member_fold == f][:, held].mean(0).double()
    singletons = torch.bincount(y, minlength=n_classes)[y] < 2
    probs[singletons] = float("nan")
    return probs


def out_of_bag_probs(member_probs: Tensor, in_bag: Tensor) -> Tensor:
    """Mean over the members that did not train on a sample: (M, N, C), (M, N) bool -> (N, C).

    in_bag[m, n] is True when sample n was in member m's bootstrap sample (any multiplicity).
    A sample in every member's bag has a NaN row (it cannot be judged out of bag; with M
    bootstrap members that happens with probability about (1 - 1/e)^M, 10% at M = 5).
    """
    p = torch.as_tensor(member_probs).to(torch.float64)
    bag = torch.as_tensor(in_bag).to(torch.bool)
    if p.ndim != 3 or bag.shape != p.shape[:2]:
        raise ValueError(
            f"need (M, N, C) probs and an (M, N) in-bag mask; got {tuple(p.shape)}, "
            f"{tuple(bag.shape)}"
        )
    out = (~bag).to(torch.float64).unsqueeze(-1)  # (M, N, 1)
    count = out.sum(0)  # (N, 1)
    mean = (p * out).sum(0) / count.clamp_min(1.0)
    return torch.where(count > 0, mean, torch.full_like(mean, float("nan")))


def rank_label_issues(
    labels: Tensor | np.ndarray,
    probs: Tensor | np.ndarray,
    *,
    method: str = "self_confidence",
) -> LabelIssues:
    """Rank given labels (N,) by out-of-sample probabilities (N, C) (NaN rows: not judged).

    Validates, then delegates to cleanlab: `rank.get_label_quality_scores(method=...)` for the
    score and `filter.find_label_issues` (confident learning, prune_by_noise_rate) for the
    flagged set, both over the judged rows only.
    """
    # Imported here: cleanlab pulls in pandas and scikit-learn (about a second), which the rest
    # of core, loaded by every round and the UI, does not need.
    from cleanlab.filter import find_label_issues as cleanlab_find
    from cleanlab.rank import get_label_quality_scores

    if method not in RANKING_METHODS:
        raise ValueError(f"unknown ranking method {method!r}; choose from {RANKING_METHODS}")
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    p = torch.as_tensor(np.asarray(probs), dtype=torch.float64)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ValueError(f"need (N,) labels and (N, C) probs; got {tuple(y.shape)}, {p.shape}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1]})")
    judged = ~torch.isnan(p).any(1)
    finite = p[judged]
    if finite.numel() and (finite.min() < 0 or (finite.sum(1) - 1).abs().max() > 1e-4):
        raise ValueError("probs rows must be probability vectors (non-negative, summing to 1)")
    n = len(y)
    score = torch.full((n,), float("nan"), dtype=torch.float64)
    suggested = torch.full((n,), -1, dtype=torch.int64)
    flagged = torch.zeros(n, dtype=torch.bool)
    if judged.any():
        y_np, p_np = y[judged].numpy(), (finite / finite.sum(1, keepdim=True)).numpy()
        quality = get_label_quality_scores(y_np, p_np, method=method)
        score[judged] = 1.0 - torch.from_numpy(np.asarray(quality, dtype=np.float64))
        suggested[judged] = finite.argmax(1)
        # n_jobs=1: the machine is shared, and the work is tiny. Its warning about classes with
        # few labels is for a flagged set we only report; the ranking above is per label.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            issues = cleanlab_find(y_np, p_np, filter_by="prune_by_noise_rate", n_jobs=1)
        flagged[judged] = torch.from_numpy(np.asarray(issues, dtype=bool))
    return LabelIssues(
        score=score, suggested_label=suggested, flagged=flagged, probs=p, method=method
    )


def find_label_issues(
    features: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    n_classes: int,
    folds: int = 5,
    seed: int = 0,
    learner: EmbeddingLearner | None = None,
    pool: PoolGraph | None = None,
    pool_index: Tensor | np.ndarray | None = None,
    method: str = "self_confidence",
    members_per_fold: int = 1,
) -> LabelIssues:
    """`out_of_sample_probs` (K-fold embedding learner) then `rank_label_issues`."""
    probs = out_of_sample_probs(
        features,
        labels,
        n_classes=n_classes,
        folds=folds,
        seed=seed,
        learner=learner,
        pool=pool,
        pool_index=pool_index,
        members_per_fold=members_per_fold,
    )
    return rank_label_issues(labels, probs, method=method)
