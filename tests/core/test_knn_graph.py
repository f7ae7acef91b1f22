"""The pool's kNN graph and label spreading, against dense hand-built references."""

from __future__ import annotations

import pytest
import torch

from activelearn.core.knn_graph import (
    _merge,
    approximate_neighbors,
    build_pool_graph,
    nearest_neighbors,
    spread_labels,
)

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


def _exact(points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return nearest_neighbors(points, points, k, exclude_self=True)


def test_approximate_neighbors_of_separate_groups_are_the_exact_ones() -> None:
    # 12 groups of 5 points around 12 directions on a circle: each point's 4 neighbours are
    # the rest of its group, whichever cell a partition puts the group in.
    gen = torch.Generator().manual_seed(0)
    angles = torch.arange(12) * (2 * torch.pi / 12)
    centres = torch.stack([angles.cos(), angles.sin(), torch.zeros(12)], 1)
    points = torch.nn.functional.normalize(
        centres.repeat_interleave(5, 0) + 0.01 * torch.randn(60, 3, generator=gen), dim=1
    )
    sims, idx = approximate_neighbors(points, 4, cell_size=10, probes=2, partitions=2)
    exact_sims, exact_idx = _exact(points, 4)
    assert idx.sort(1).values.tolist() == exact_idx.sort(1).values.tolist()
    torch.testing.assert_close(sims, exact_sims)
    assert set(idx[0].tolist()) == {1, 2, 3, 4}


def test_approximate_neighbors_recall_on_random_points() -> None:
    # 2,000 random directions in 8-d, cells of ~100 rows: most true neighbours are found, and
    # every returned row is another row, listed once, with its true cosine, best first.
    points = torch.nn.functional.normalize(
        torch.randn(2000, 8, generator=torch.Generator().manual_seed(1)), dim=1
    )
    sims, idx = approximate_neighbors(points, 5, cell_size=100)
    _, exact_idx = _exact(points, 5)
    found = sum(len(set(a) & set(b)) for a, b in zip(idx.tolist(), exact_idx.tolist(), strict=True))
    assert found / exact_idx.numel() > 0.8
    assert not (idx == torch.arange(2000).unsqueeze(1)).any()
    assert all(len(set(row)) == 5 for row in idx.tolist())
    torch.testing.assert_close(sims, (points.unsqueeze(1) * points[idx]).sum(2))
    assert (sims[:, :-1] >= sims[:, 1:]).all()


def test_merge_keeps_the_best_distinct_neighbours() -> None:
    a = (torch.tensor([[0.9, 0.5]]), torch.tensor([[3, 1]]))
    b = (torch.tensor([[0.9, 0.7]]), torch.tensor([[3, 2]]))
    sims, idx = _merge(a, b, 2)
    assert idx.tolist() == [[3, 2]]
    torch.testing.assert_close(sims, torch.tensor([[0.9, 0.7]]))


def test_a_large_pool_gets_the_approximate_graph() -> None:
    points = torch.nn.functional.normalize(
        torch.randn(300, 4, generator=torch.Generator().manual_seed(2)), dim=1
    )
    exact = build_pool_graph(points, k=3)
    approximate = build_pool_graph(points, k=3, exact_max=299)
    torch.testing.assert_close(
        approximate.neighbors, approximate_neighbors(points, 3)[1], rtol=0, atol=0
    )
    # with one cell of 300 rows (cells of 512) the approximate search is the exact one
    torch.testing.assert_close(approximate.neighbors, exact.neighbors)
