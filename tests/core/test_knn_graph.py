"""The pool's kNN graph and label spreading, against dense hand-built references."""

from __future__ import annotations

import pytest
import torch

from activelearn.core.knn_graph import build_pool_graph, nearest_neighbors, spread_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_nearest_neighbors_excludes_self_and_sorts_by_cosine() -> None:
    points = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]), dim=1
    )
    sims, idx = nearest_neighbors(points, points, 1, exclude_self=True)
    assert idx.flatten().tolist() == [1, 0, 3, 2]
    torch.testing.assert_close(sims.flatten(), (points * points[[1, 0, 3, 2]]).sum(1))


def test_operator_is_the_normalised_symmetric_graph() -> None:
    points = torch.nn.functional.normalize(torch.rand(7, 3) + 0.1, dim=1)
    graph = build_pool_graph(points, k=2, gamma=3.0)
    n = 7
    a = torch.zeros(n, n)
    for i in range(n):
        for j, s in zip(graph.neighbors[i].tolist(), graph.similarities[i].tolist(), strict=True):
            a[i, j] = max(s, 0.0) ** 3
    w = (a + a.T) / 2
    d = w.sum(1).rsqrt()
    expected = d[:, None] * w * d[None, :]
    torch.testing.assert_close(graph.operator.to_dense(), expected, atol=1e-6, rtol=1e-5)


def test_spreading_converges_to_the_closed_form() -> None:
    points = torch.nn.functional.normalize(torch.rand(9, 4) + 0.1, dim=1)
    graph = build_pool_graph(points, k=3)
    seeds = torch.zeros(9, 2)
    seeds[0, 0] = seeds[5, 1] = 1.0
    alpha = 0.5
    spread = spread_labels(graph, seeds, alpha=alpha, iterations=200)
    s = graph.operator.to_dense()
    # Zhou et al. 2004: F* = (1 - alpha) (I - alpha S)^-1 Y
    closed = (1 - alpha) * torch.linalg.solve(torch.eye(9) - alpha * s, seeds)
    torch.testing.assert_close(spread, closed, atol=1e-5, rtol=1e-4)
