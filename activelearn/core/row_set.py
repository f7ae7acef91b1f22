"""One identity for a set of embedding rows whatever their order.

A worker's pool is the same set round after round, but its layout (open rows first, labeled
last) changes as labels move. What is computed once per set (the kNN graph, a k-means
clustering) is computed over the rows in a canonical order, sorted by a fixed random
projection, and keyed by a digest of those rows; a pool in another order gets it renumbered.
Rows that tie in the projection are identical rows (up to a measure-zero coincidence), so
their order changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["RowSet", "row_set"]


@dataclass(frozen=True)
class RowSet:
    """order (N,): canonical row c is the caller's row order[c]; position (N,): the inverse
    (the caller's row r is canonical row position[r]); key: shape and digest of the set;
    rows: the (N, D) float32 rows in canonical order (hashed for the key; what a cache miss
    computes on, so it need not gather 100 MB a second time)."""

    order: Tensor
    position: Tensor
    key: str
    rows: Tensor

    def canonical(self, rows: Tensor) -> Tensor:
        """Per-row values (N, ...) in the caller's order -> in canonical order."""
        return rows[self.order]

    def caller(self, rows: Tensor) -> Tensor:
        """Per-row values (N, ...) in canonical order -> in the caller's order."""
        return rows[self.position]


def row_set(points: Tensor) -> RowSet:
    """(N, D) rows -> their canonical order and the set's key (a 128-bit BLAKE2b digest of the
    float32 rows in that order)."""
    rows = points.to(torch.float32)
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(rows.shape[1], generator=gen, dtype=torch.float64)
    # float64: a float32 product may round a row differently at another position, and 100k
    # projections have near-ties at that scale (a reordered tie is a digest that misses).
    # In blocks: one float64 copy of 100k x 256 rows is 200 MB.
    projection = torch.cat([block.double() @ direction for block in rows.split(8192)])
    order = torch.sort(projection, stable=True).indices
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order))
    canonical = rows[order].contiguous()
    digest = hashlib.blake2b(memoryview(canonical.numpy()).cast("B"), digest_size=16).hexdigest()
    key = f"{tuple(points.shape)}:{digest}"
    return RowSet(order=order, position=position, key=key, rows=canonical)
