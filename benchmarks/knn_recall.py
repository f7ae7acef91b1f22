"""Recall of the approximate kNN graph (core.knn_graph.approximate_neighbors) against exact search.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python -W ignore benchmarks/knn_recall.py \
        [--pool 100000] [--queries 2000]

Two synthetic 256-d unit-row sets of --pool rows: round_scale.py's (10 clusters under heavy
isotropic noise: neighbours barely nearer than the rest of their cluster, the hard case) and a
16-d manifold (10 Gaussian clusters in 16-d mapped linearly to 256-d, with a little noise: how
learned embeddings look). For --queries rows, the exact 5 neighbours by brute force; prints the
approximate search's time (wall and CPU), recall@5, the mean cosine of the neighbours found vs
the exact ones, and the share of neighbours from the row's own cluster.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout too

from activelearn.core.knn_graph import approximate_neighbors
from benchmarks.round_scale import synthetic

K = 5


def manifold(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(10, 16, generator=gen)
    y = torch.randint(10, (n,), generator=gen)
    latent = centres[y] + torch.randn(n, 16, generator=gen)
    mapped = latent @ torch.randn(16, 256, generator=gen) + 0.5 * torch.randn(n, 256, generator=gen)
    return torch.nn.functional.normalize(mapped, dim=1), y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| data | rows | seconds (CPU) | recall@5 | mean cos found / exact | same cluster |")
    print("|---|---|---|---|---|---|")
    for name, (x, y) in (
        ("round_scale clusters", synthetic(args.pool, seed=args.pool)),
        ("16-d manifold", manifold(args.pool, seed=0)),
    ):
        x = x.contiguous()
        started, cpu = time.perf_counter(), time.process_time()
        sims, idx = approximate_neighbors(x, K)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        q = torch.randperm(args.pool, generator=torch.Generator().manual_seed(1))[: args.queries]
        exact = x[q] @ x.T
        exact[torch.arange(len(q)), q] = -float("inf")
        best = exact.topk(K, dim=1)
        found = sum(
            len(set(a) & set(b))
            for a, b in zip(idx[q].tolist(), best.indices.tolist(), strict=True)
        )
        same = (y[idx[q]] == y[q].unsqueeze(1)).float().mean()
        recall = found / best.indices.numel()
        print(
            f"| {name} | {args.pool:,} | {wall:.2f} ({cpu:.2f}) | {recall:.3f} "
            f"| {sims[q].mean():.4f} / {best.values.mean():.4f} | {same:.3f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
