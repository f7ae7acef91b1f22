"""A k-nearest-neighbour graph of a pool's embeddings and label spreading over it.

Label spreading is Zhou et al. 2004, "Learning with local and global consistency":
W is the symmetrised kNN graph with weights max(cos, 0)^gamma (Iscen et al. 2019, "Label
propagation for deep semi-supervised learning"), S = D^-1/2 W D^-1/2, and
F <- alpha S F + (1 - alpha) Y is iterated from F = Y. Built once per embedding set (it does
not depend on labels); spreading many label sets at once is one sparse (N, N) x (N, K) product
per iteration.

The neighbours are exact (a chunked matmul, O(N^2 D)) up to EXACT_MAX_NODES rows; past it an
exact search costs minutes (100k x 256: about 85 s of CPU on one core here), so the graph is
approximate: `approximate_neighbors` searches each row's neighbours among the rows of its own
cell and the nearest other cell of a spherical k-means partition (an inverted-file search, as
Jegou et al. 2011's IVF, done as one matmul per cell), in PARTITIONS independent partitions
whose results are merged: about 2,000 candidates a row instead of 100k. Measured with
benchmarks/knn_recall.py (one core, CPU seconds, recall of the exact 5 neighbours):

| data, 256-d | rows | CPU s | recall@5 | mean cos found / exact | same cluster |
|---|---|---|---|---|---|
| round_scale's 10 noisy clusters | 100k | 3.4 | 0.45 | 0.484 / 0.494 | 1.000 |
| a 16-d manifold | 100k | 2.4 | 0.78 | 0.946 / 0.948 | 0.999 |
| round_scale's 10 noisy clusters | 20k | 0.5 | 0.90 | 0.473 / 0.474 | 1.000 |
| the demo's hog+pixels pool | 4k | - | 0.96 | - | - |

The misses are near-ties (round_scale's rows are mostly isotropic noise: mean cosine of the
5th exact neighbour 0.486, the 10th 0.477, the 50th 0.455), and on the demo the approximate
graph leaves label efficiency as it was (benchmarks/embedding_learner.py --exact-max 0: auto
92.5% at 30 labels, 95.4% at 50; exact graph 92.5%, 95.1%).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["PoolGraph", "approximate_neighbors", "build_pool_graph", "spread_labels"]

EXACT_MAX_NODES = 20_000  # exact search: 20k rows x 256-d is about 3 s on one core
CELL_SIZE = 512  # rows per cell of a partition (the matmul block of the approximate search)
PROBES = 2  # cells searched per row: its own and the one whose centre is nearest to its cell's
PARTITIONS = 2  # independent partitions: a neighbour across a border of one is inside another


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


def approximate_neighbors(
    points: Tensor,
    k: int,
    *,
    cell_size: int = CELL_SIZE,
    probes: int = PROBES,
    partitions: int = PARTITIONS,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Cosine kNN of every row among the others, approximately: (N, D) unit rows -> (N, k)
    sims (descending), (N, k) indices, self excluded. Deterministic for a seed and row order."""
    n = points.shape[0]
    k = min(k, n - 1)
    best = _cell_search(points, k, cell_size, probes, seed)
    for part in range(1, partitions):
        best = _merge(best, _cell_search(points, k, cell_size, probes, seed + part), k)
    return best


def _cell_search(
    points: Tensor, k: int, cell_size: int, probes: int, seed: int
) -> tuple[Tensor, Tensor]:
    """One partition: every row's k best among the rows of its cell and of the probes - 1 cells
    whose centres are nearest to its cell's centre (more when those hold under k + 1 rows)."""
    n = points.shape[0]
    centres, cell = _cells(points, cell_size, seed)
    order = torch.argsort(cell, stable=True)  # rows grouped by cell
    grouped = points[order]
    counts = torch.bincount(cell, minlength=centres.shape[0]).tolist()
    starts = [0]
    for count in counts[:-1]:
        starts.append(starts[-1] + count)
    nearest_cells = (centres @ centres.T).argsort(1, descending=True).tolist()
    sims = torch.empty(n, k)
    idx = torch.empty(n, k, dtype=torch.long)
    for c, count in enumerate(counts):
        if count == 0:
            continue
        searched, total = [c], count  # the cell itself first: its rows' self-matches on a diagonal
        for other in nearest_cells[c]:
            if len(searched) >= probes and total > k:
                break
            if other != c and counts[other]:
                searched.append(other)
                total += counts[other]
        rows = torch.cat([torch.arange(starts[j], starts[j] + counts[j]) for j in searched])
        block = grouped[starts[c] : starts[c] + count] @ grouped[rows].T  # (count, total)
        block[:, :count].fill_diagonal_(-float("inf"))
        top = block.topk(k, dim=1)
        sims[starts[c] : starts[c] + count] = top.values
        idx[starts[c] : starts[c] + count] = rows[top.indices]
    out_sims, out_idx = torch.empty_like(sims), torch.empty_like(idx)
    out_sims[order] = sims
    out_idx[order] = order[idx]  # grouped positions -> the caller's rows
    return out_sims, out_idx


def _cells(points: Tensor, cell_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """A partition into cells of about cell_size rows: (C, D) unit centres, (N,) cell of each
    row. A cell over twice cell_size is split by a k-means of its own rows (a search costs
    the sum of cell size x rows searched: on round_scale's data k-means alone left cells of
    up to 2,572 rows for 512 and doubled the cost)."""
    n = points.shape[0]
    centres = _spherical_kmeans(points, -(-n // cell_size), seed=seed)
    cell = torch.cat([(points[s : s + 8192] @ centres.T).argmax(1) for s in range(0, n, 8192)])
    counts = torch.bincount(cell, minlength=centres.shape[0])
    parts = [centres]
    for c in (counts > 2 * cell_size).nonzero().flatten().tolist():
        members = (cell == c).nonzero().flatten()
        rows = points[members]
        sub = _spherical_kmeans(rows, -(-len(members) // cell_size), seed=seed + 1 + c)
        split = (rows @ sub.T).argmax(1)  # 0 keeps cell c, j > 0 a new cell
        total = sum(p.shape[0] for p in parts)
        centres_c = torch.where(split == 0, c, total + split - 1)
        cell[members] = centres_c
        parts[0][c] = sub[0]
        parts.append(sub[1:])
    return torch.cat(parts), cell


def _spherical_kmeans(points: Tensor, cells: int, *, seed: int, iterations: int = 10) -> Tensor:
    """(cells, D) unit centres of a k-means by cosine fitted on a sample of 32 rows per cell
    (a partition for a search needs balanced cells, not a converged clustering)."""
    gen = torch.Generator().manual_seed(seed)
    n = points.shape[0]
    cells = max(1, min(cells, n))
    sample = points[torch.randperm(n, generator=gen)[: min(n, 32 * cells)]]
    centres = sample[torch.randperm(sample.shape[0], generator=gen)[:cells]].clone()
    for _ in range(iterations):
        assign = (sample @ centres.T).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, sample)
        filled = torch.bincount(assign, minlength=cells).unsqueeze(1) > 0
        centres = torch.where(filled, torch.nn.functional.normalize(sums, dim=1), centres)
    return centres


def _merge(a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor], k: int) -> tuple[Tensor, Tensor]:
    """Two (sims, indices) neighbour lists of the same rows -> the k best, each index once."""
    sims, idx = torch.cat([a[0], b[0]], 1), torch.cat([a[1], b[1]], 1)
    ordered, perm = idx.sort(1)
    repeat = torch.zeros_like(idx, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    sims = sims.masked_fill(torch.zeros_like(repeat).scatter_(1, perm, repeat), -float("inf"))
    top = sims.topk(k, dim=1)
    return top.values, idx.gather(1, top.indices)


def build_pool_graph(
    embeddings: Tensor | np.ndarray,
    *,
    k: int = 5,
    gamma: float = 3.0,
    exact_max: int = EXACT_MAX_NODES,
) -> PoolGraph:
    """(N, D) embeddings (normalised here) -> the pool's kNN graph and spreading operator;
    exact neighbours up to exact_max rows, approximate_neighbors past it.

    k = 5: on the demo a sparser graph spreads fewer labels across class borders (SSL+PCA
    features, typiclust at 60 labels: 93.3% with k = 5, 92.3% with k = 10, 90.3% with k = 20;
    HOG features, random at 200 labels: 95.9% vs 95.4% with k = 10)."""
    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"embeddings must be (N, D) with N >= 2; got {tuple(x.shape)}")
    x = torch.nn.functional.normalize(x, dim=1)
    if x.shape[0] <= exact_max:
        sims, idx = nearest_neighbors(x, x, k, exclude_self=True)
    else:
        sims, idx = approximate_neighbors(x, k)
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
