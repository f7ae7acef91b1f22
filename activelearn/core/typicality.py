"""Cold-start selection from the embeddings: TypiClust, and `auto` (TypiClust, then BALD).

TypiClust (Hacohen, Dekel & Weinshall, ICML 2022, "Active learning on a budget"): cluster the
pool's embeddings with k-means into (labeled + batch) clusters (capped), then, one pick at a
time, take the cluster with the fewest labeled points (ties: the largest; clusters under
`min_cluster_size` are skipped) and pick its most typical point, where

    typicality(x) = 1 / mean_{x' in kNN(x)} ||x - x'||   (k neighbours within the cluster).

`auto` uses TypiClust while the model knows little (fewer than `labels_per_class` labels per
class on average), then BALD (mutual information of the ensemble's (M, N, C) probabilities),
one pick per k-means cluster so that a batch does not come from one contested region.
Every pick carries a sentence for "Why this sample".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from activelearn.core.acquisition import mutual_information

__all__ = [
    "SELECTORS",
    "Selection",
    "SelectionContext",
    "auto_select",
    "bald_select",
    "diverse_bald_select",
    "kmeans",
    "typicality",
    "typiclust_select",
]


@dataclass(frozen=True)
class Selection:
    indices: list[int]  # pool positions, in serving order
    reasons: list[str]  # one "Why this sample" sentence per index


@dataclass(frozen=True)
class SelectionContext:
    """What a selector may look at. embeddings (N, D) of the whole pool; labeled (N,) bool;
    probs (M, N, C) of the current model on the pool, or None before the first model."""

    embeddings: Tensor
    labeled: Tensor
    count: int
    n_classes: int
    seed: int
    probs: Tensor | None = None


def typicality(points: Tensor, *, k: int = 20) -> Tensor:
    """(N, D) -> (N,) inverse mean Euclidean distance to the k nearest other points."""
    n = points.shape[0]
    if n < 2:
        return torch.ones(n, dtype=points.dtype)
    k = min(k, n - 1)
    out = torch.empty(n, dtype=points.dtype)
    for start in range(0, n, 2048):
        dist = torch.cdist(points[start : start + 2048], points)  # (b, N)
        # the point itself is at distance 0: take k + 1 smallest and drop the first
        nearest = dist.topk(k + 1, dim=1, largest=False).values[:, 1:]
        out[start : start + 2048] = 1.0 / nearest.mean(1).clamp_min(1e-12)
    return out


def kmeans(
    points: Tensor, k: int, *, seed: int, iterations: int = 30, sample: int = 20_000
) -> Tensor:
    """Lloyd's k-means with k-means++ seeding (fitted on at most `sample` points):
    (N, D) -> (N,) int64 cluster ids in [0, k)."""
    n = points.shape[0]
    k = max(1, min(k, n))
    gen = torch.Generator().manual_seed(seed)
    fit_on = points if n <= sample else points[torch.randperm(n, generator=gen)[:sample]]
    centers = fit_on[torch.randint(fit_on.shape[0], (1,), generator=gen)]
    closest = torch.cdist(fit_on, centers).squeeze(1) ** 2
    for _ in range(1, k):
        pick = torch.multinomial(closest.clamp_min(0) + 1e-12, 1, generator=gen)
        centers = torch.cat([centers, fit_on[pick]])
        closest = torch.minimum(closest, (torch.cdist(fit_on, fit_on[pick]).squeeze(1)) ** 2)
    for _ in range(iterations):
        assign = torch.cdist(fit_on, centers).argmin(1)
        sums = torch.zeros_like(centers).index_add_(0, assign, fit_on)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        moved = torch.where(counts > 0, sums / counts.clamp_min(1), centers)
        if torch.allclose(moved, centers):
            break
        centers = moved
    return torch.cat(
        [torch.cdist(points[s : s + 8192], centers).argmin(1) for s in range(0, n, 8192)]
    )


def typiclust_select(
    context: SelectionContext,
    *,
    max_clusters: int = 500,
    k_neighbors: int = 20,
    min_cluster_size: int = 5,
) -> Selection:
    """TypiClust's picks for one batch of context.count samples from the unlabeled pool."""
    points = torch.as_tensor(context.embeddings, dtype=torch.float32)
    labeled = torch.as_tensor(context.labeled, dtype=torch.bool).clone()
    n_labeled = int(labeled.sum())
    n_clusters = min(n_labeled + context.count, max_clusters, points.shape[0])
    cluster = kmeans(points, n_clusters, seed=context.seed)
    sizes = torch.bincount(cluster, minlength=n_clusters)
    covered = torch.bincount(cluster[labeled], minlength=n_clusters)
    indices: list[int] = []
    reasons: list[str] = []
    for _ in range(min(context.count, int((~labeled).sum()))):
        free = torch.bincount(cluster[~labeled], minlength=n_clusters)
        usable = (free > 0) & (sizes >= min(min_cluster_size, int(sizes.max())))
        if not usable.any():
            usable = free > 0
        # fewest labeled first, then largest: a lexicographic key in one integer
        key = covered * (points.shape[0] + 1) - sizes
        key = torch.where(usable, key, torch.iinfo(key.dtype).max)
        chosen = int(key.argmin())
        members = (cluster == chosen).nonzero().flatten()
        typical = typicality(points[members], k=k_neighbors)
        typical[labeled[members]] = -float("inf")
        index = int(members[typical.argmax()])
        size, had = int(sizes[chosen]), int(covered[chosen])
        where = (
            f"an unlabeled cluster of {size} images"
            if had == 0
            else f"a cluster of {size} images with {had} label{'s' if had != 1 else ''}"
        )
        indices.append(index)
        reasons.append(f"most typical of {where}")
        labeled[index] = True
        covered[chosen] += 1
    return Selection(indices=indices, reasons=reasons)


def bald_select(context: SelectionContext) -> Selection:
    """Top-count unlabeled samples by mutual information of context.probs (M, N, C)."""
    if context.probs is None:
        raise ValueError("bald needs the model's probabilities (M, N, C) on the pool")
    scores = mutual_information(context.probs).to(torch.float64)
    scores[torch.as_tensor(context.labeled, dtype=torch.bool)] = -float("inf")
    count = min(context.count, int((~torch.as_tensor(context.labeled)).sum()))
    top = scores.topk(count)
    return Selection(
        indices=[int(i) for i in top.indices],
        reasons=[
            f"the ensemble's members disagree most here (mutual information {float(s):.3f} nats)"
            for s in top.values
        ],
    )


def diverse_bald_select(context: SelectionContext, *, max_clusters: int = 500) -> Selection:
    """BALD with one pick per k-means cluster: the count clusters whose best unlabeled sample
    has the highest mutual information each give that sample (top-k MI alone takes a batch
    from one contested region)."""
    if context.probs is None:
        raise ValueError("bald needs the model's probabilities (M, N, C) on the pool")
    labeled = torch.as_tensor(context.labeled, dtype=torch.bool)
    scores = mutual_information(context.probs).to(torch.float64)
    scores[labeled] = -float("inf")
    points = torch.as_tensor(context.embeddings, dtype=torch.float32)
    n_clusters = min(int(labeled.sum()) + context.count, max_clusters, points.shape[0])
    cluster = kmeans(points, n_clusters, seed=context.seed)
    best = torch.full((n_clusters,), -float("inf"), dtype=torch.float64)
    best = best.scatter_reduce(0, cluster, scores, reduce="amax")
    count = min(context.count, int((~labeled).sum()))
    indices, reasons = [], []
    for c in best.argsort(descending=True)[:count].tolist():
        if best[c] == -float("inf"):
            break
        members = (cluster == c).nonzero().flatten()
        index = int(members[scores[members].argmax()])
        indices.append(index)
        reasons.append(
            f"the ensemble's members disagree most here (mutual information "
            f"{float(scores[index]):.3f} nats), the most in its cluster of {len(members)} images"
        )
    return Selection(indices=indices, reasons=reasons)


def auto_select(context: SelectionContext, *, labels_per_class: float = 3.0) -> Selection:
    """TypiClust while fewer than labels_per_class labels per class exist (or no model), then
    BALD one per cluster (on the demo: 85.9% at 100 labels vs 82.6% with top-k BALD, 1 repeat)."""
    n_labeled = int(torch.as_tensor(context.labeled).sum())
    if context.probs is None or n_labeled < labels_per_class * context.n_classes:
        return typiclust_select(context)
    return diverse_bald_select(context)


SELECTORS: dict[str, Callable[[SelectionContext], Selection]] = {
    "typiclust": typiclust_select,
    "auto": auto_select,
    "bald": bald_select,
    "diverse_bald": diverse_bald_select,
}
