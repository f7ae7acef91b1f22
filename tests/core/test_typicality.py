"""TypiClust and auto: typicality by hand, cluster choice, explanations, the switch to BALD."""

from __future__ import annotations

import pytest
import torch

from activelearn.core.typicality import (
    SELECTORS,
    SelectionContext,
    _nearest_center,
    _squared_distances,
    auto_select,
    cluster_count,
    clusters,
    kmeans,
    typicality,
    typiclust_select,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_typicality_matches_a_hand_computation() -> None:
    points = torch.tensor([[0.0], [1.0], [3.0]])
    # k=1: nearest distances 1, 1, 2
    torch.testing.assert_close(typicality(points, k=1), torch.tensor([1.0, 1.0, 0.5]))
    # k=2: mean distances (1+3)/2, (1+2)/2, (2+3)/2
    torch.testing.assert_close(typicality(points, k=2), torch.tensor([0.5, 2 / 3, 0.4]))


def _two_blobs() -> torch.Tensor:
    """30 points around (0, 0) with (0, 0) itself at index 0; 10 around (10, 10), index 30."""
    gen = torch.Generator().manual_seed(0)
    big = torch.cat([torch.zeros(1, 2), torch.randn(29, 2, generator=gen) * 0.5])
    small = torch.cat([torch.full((1, 2), 10.0), 10.0 + torch.randn(9, 2, generator=gen) * 0.5])
    return torch.cat([big, small])


def test_kmeans_separates_far_blobs() -> None:
    ids = kmeans(_two_blobs(), 2, seed=0)
    assert len(set(ids[:30].tolist())) == 1 and len(set(ids[30:].tolist())) == 1
    assert ids[0] != ids[30]


def test_typiclust_picks_the_centre_of_the_largest_uncovered_cluster_first() -> None:
    points = _two_blobs()
    context = SelectionContext(
        points, torch.zeros(40, dtype=torch.bool), count=2, n_classes=2, seed=0
    )
    picked = typiclust_select(context, min_cluster_size=1)
    centre_big = int(typicality(points[:30]).argmax())
    centre_small = 30 + int(typicality(points[30:]).argmax())
    assert picked.indices == [centre_big, centre_small]
    assert picked.reasons == [
        "most typical of an unlabeled cluster of 30 images",
        "most typical of an unlabeled cluster of 10 images",
    ]


def test_typiclust_prefers_the_cluster_without_labels() -> None:
    points = _two_blobs()
    labeled = torch.zeros(40, dtype=torch.bool)
    labeled[:3] = True
    # labeled + count = 4 clusters: the big blob splits, the small one stays whole and uncovered
    picked = typiclust_select(SelectionContext(points, labeled, 1, 2, 0), min_cluster_size=1)
    assert picked.indices[0] not in (0, 1, 2)
    assert "unlabeled cluster" in picked.reasons[0]


def test_auto_switches_from_typicality_to_bald() -> None:
    points = _two_blobs()
    labeled = torch.zeros(40, dtype=torch.bool)
    probs = torch.full((2, 40, 2), 0.5)
    probs[0, 7] = torch.tensor([0.99, 0.01])
    probs[1, 7] = torch.tensor([0.01, 0.99])  # members disagree only on sample 7
    few = auto_select(SelectionContext(points, labeled, 1, 2, 0, probs=probs))
    assert few.reasons[0].startswith("most typical")
    labeled[[0, 1, 30, 31, 32, 33]] = True  # 3 per class
    many = auto_select(SelectionContext(points, labeled, 1, 2, 0, probs=probs))
    assert many.indices == [7] and "mutual information" in many.reasons[0]
    assert set(SELECTORS) >= {"typiclust", "auto"}
    with pytest.raises(ValueError, match="probabilities"):
        SELECTORS["bald"](SelectionContext(points, labeled, 1, 2, 0))


def test_diverse_bald_takes_one_sample_per_cluster() -> None:
    points = _two_blobs()
    labeled = torch.zeros(40, dtype=torch.bool)
    probs = torch.full((2, 40, 2), 0.5)
    for index, gap in ((3, 0.49), (4, 0.45), (35, 0.3)):  # MI: 3 > 4 > 35
        probs[0, index] = torch.tensor([0.5 + gap, 0.5 - gap])
        probs[1, index] = torch.tensor([0.5 - gap, 0.5 + gap])
    context = SelectionContext(points, labeled, 2, 2, 0, probs=probs)
    assert SELECTORS["bald"](context).indices == [3, 4]  # top-k: both from the big blob
    picked = SELECTORS["diverse_bald"](context)
    assert picked.indices == [3, 35]
    assert "cluster of 30 images" in picked.reasons[0]


def test_the_cluster_count_climbs_a_ladder_past_fifty() -> None:
    assert [cluster_count(w, 10_000, 500) for w in (1, 20, 50)] == [1, 20, 50]
    # rungs: 50, ceil(50 * 1.1) = 55, ceil(55 * 1.1) = 61, ceil(61 * 1.1) = 68
    assert [cluster_count(w, 10_000, 500) for w in (51, 55, 56, 62, 68)] == [55, 55, 61, 68, 68]
    assert cluster_count(400, 10_000, 300) == 300 and cluster_count(60, 40, 500) == 40


def test_squared_distances_by_matmul_match_cdist() -> None:
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    centers = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    expected = torch.tensor([[0.0, 9.0], [25.0, 16.0], [2.0, 5.0]])  # by hand
    norms = (points * points).sum(1)
    torch.testing.assert_close(_squared_distances(points, norms, centers), expected)
    torch.testing.assert_close(torch.cdist(points, centers) ** 2, expected)
    assert _nearest_center(points, centers).tolist() == [0, 1, 0]


def test_a_clustering_is_computed_once_per_set_whatever_the_rows_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from activelearn.core import typicality as module

    calls: list[int] = []
    real = module.kmeans

    def counting(points: torch.Tensor, k: int, *, seed: int) -> torch.Tensor:
        calls.append(k)
        return real(points, k, seed=seed)

    monkeypatch.setattr(module, "kmeans", counting)
    points = _two_blobs() + 0.001 * torch.arange(40).unsqueeze(1)  # unlike other tests' rows
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    first = clusters(points, 3, seed=0)
    second = clusters(points[perm], 3, seed=0)
    assert calls == [3]
    assert torch.equal(second, first[perm])  # the same ids, following the rows
    clusters(points, 4, seed=0)
    clusters(points, 4, seed=1)
    assert calls == [3, 4, 4]


def test_typiclust_picks_the_same_rows_in_any_order() -> None:
    points = _two_blobs()
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(4))
    labeled = torch.zeros(40, dtype=torch.bool)
    labeled[[0, 31]] = True
    first = typiclust_select(SelectionContext(points, labeled, 3, 2, 0), min_cluster_size=1)
    again = typiclust_select(
        SelectionContext(points[perm], labeled[perm], 3, 2, 0), min_cluster_size=1
    )
    assert [int(perm[i]) for i in again.indices] == first.indices
    assert again.reasons == first.reasons
