"""A k-nearest-neighbour graph of a pool's embeddings and label spreading over it.

Label spreading is Zhou et al. 2004, "Learning with local and global consistency":
W is the symmetrised kNN graph with weights max(cos, 0)^gamma (Iscen et al. 2019, "Label
propagation for deep semi-supervised learning"), S = D^-1/2 W D^-1/2, and
F <- alpha S F + (1 - alpha) Y is iterated from F = Y. Built once per embedding set (it does
not depend on labels); spreading many label sets at once is one sparse (N, N) x (N, K) product
per iteration.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["PoolGraph", "build_pool_graph", "spread_labels"]


@dataclass(frozen=True)
class PoolGraph:
    """embeddings (N, D) float32 unit rows; neighbors (N, k) int64 (self excluded); similarities
    (N, k) float32 cosine, descending; operator: S = D^-1/2 W D^-1/2 as a sparse CSR (N, N)."""

    embeddings: Tensor
    neighbors: Tensor
    similarities: Tensor
    operator: Tensor

    @property
    def size(self) -> int:
        return int(self.embeddings.shape[0])


def nearest_neighbors(
    queries: Tensor, points: Tensor, k: int, *, exclude_self: bool, chunk_size: int = 2048
) -> tuple[Tensor, Tensor]:
    """Cosine kNN by exact search: (Q, D), (N, D) unit rows -> (Q, k) sims, (Q, k) indices.

    With exclude_self the queries must be the points themselves (row i never returns i).
    """
    k = min(k, points.shape[0] - (1 if exclude_self else 0))
    sims, idx = [], []
    for start in range(0, queries.shape[0], chunk_size):
        block = queries[start : start + chunk_size] @ points.T  # (q, N)
        if exclude_self:
            rows = torch.arange(block.shape[0])
            block[rows, rows + start] = -float("inf")
        top = block.topk(k, dim=1)
        sims.append(top.values)
        idx.append(top.indices)
    return torch.cat(sims), torch.cat(idx)


def build_pool_graph(
    embeddings: Tensor | np.ndarray, *, k: int = 5, gamma: float = 3.0
) -> PoolGraph:
    """(N, D) embeddings (normalised here) -> the pool's kNN graph and spreading operator.

    k = 5: on the demo a sparser graph spreads fewer labels across class borders (SSL+PCA
    features, typiclust at 60 labels: 93.3% with k = 5, 92.3% with k = 10, 90.3% with k = 20;
    HOG features, random at 200 labels: 95.9% vs 95.4% with k = 10)."""
    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"embeddings must be (N, D) with N >= 2; got {tuple(x.shape)}")
    x = torch.nn.functional.normalize(x, dim=1)
    sims, idx = nearest_neighbors(x, x, k, exclude_self=True)
    weights = sims.clamp_min(0.0) ** gamma  # (N, k)
    # The indices are built valid above; the check_invariants warning and the CSR "beta" notice
    # would print on every round of a command-line user.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _graph(x, sims, idx, weights)


def _graph(x: Tensor, sims: Tensor, idx: Tensor, weights: Tensor) -> PoolGraph:
    n = x.shape[0]
    rows = torch.arange(n).repeat_interleave(idx.shape[1])
    w = torch.sparse_coo_tensor(
        torch.stack([torch.cat([rows, idx.reshape(-1)]), torch.cat([idx.reshape(-1), rows])]),
        torch.cat([weights.reshape(-1), weights.reshape(-1)]) / 2.0,  # W = (A + A^T) / 2
        size=(n, n),
    ).coalesce()
    degree = torch.zeros(n).index_add_(0, w.indices()[0], w.values())
    inv_sqrt = degree.clamp_min(1e-12).rsqrt()
    values = inv_sqrt[w.indices()[0]] * w.values() * inv_sqrt[w.indices()[1]]
    operator = torch.sparse_coo_tensor(w.indices(), values, size=(n, n)).coalesce().to_sparse_csr()
    return PoolGraph(embeddings=x, neighbors=idx, similarities=sims, operator=operator)


def spread_labels(
    graph: PoolGraph, seeds: Tensor, *, alpha: float = 0.99, iterations: int = 20
) -> Tensor:
    """Label spreading: seeds (N, K) (one-hot rows at labeled nodes, zeros elsewhere; K may stack
    several label sets side by side) -> (N, K) scores F (not normalised)."""
    if seeds.shape[0] != graph.size:
        raise ValueError(f"seeds have {seeds.shape[0]} rows; the graph has {graph.size} nodes")
    y = seeds.to(torch.float32)
    f = y.clone()
    for _ in range(iterations):
        f = alpha * (graph.operator @ f) + (1.0 - alpha) * y
    return f
