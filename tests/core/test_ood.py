"""OOD scores: kNN distance, percentile ranks, their average, and the AUROC helper."""

from __future__ import annotations

import math

import pytest
import torch

from activelearn.core.acquisition import mutual_information, predictive_entropy
from activelearn.core.ood import auroc, knn_distance, ood_scores, percentile_ranks


def _unit(degrees: list[float]) -> torch.Tensor:
    a = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], 1).float()


def test_knn_distance_is_one_minus_cosine_to_the_kth_neighbour() -> None:
    labeled = _unit([0.0, 90.0, 180.0])
    pool = _unit([30.0, 100.0])
    # 30°: neighbours at 30° and 60°; 100°: at 10° and 80°
    assert torch.allclose(
        knn_distance(pool, labeled, k=1),
        torch.tensor([1 - math.cos(math.radians(30)), 1 - math.cos(math.radians(10))]).double(),
        atol=1e-6,
    )
    assert torch.allclose(
        knn_distance(pool, labeled, k=2),
        torch.tensor([1 - math.cos(math.radians(60)), 1 - math.cos(math.radians(80))]).double(),
        atol=1e-6,
    )
    # scale does not matter: rows are normalised
    assert torch.allclose(knn_distance(3 * pool, labeled, k=1), knn_distance(pool, labeled, k=1))


def test_percentile_ranks_share_mid_ranks_between_ties() -> None:
    got = percentile_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0]))
    assert torch.allclose(got, torch.tensor([3.5, 1.0, 3.5, 2.0], dtype=torch.float64) / 4)


def test_a_far_away_point_gets_the_top_score() -> None:
    gen = torch.Generator().manual_seed(0)
    center = torch.tensor([1.0, 0.0, 0.0, 0.0])
    labeled = center + 0.1 * torch.randn(30, 4, generator=gen)
    pool = center + 0.1 * torch.randn(50, 4, generator=gen)
    pool[17] = torch.tensor([-1.0, 0.2, 0.0, 0.0])
    scores = ood_scores(pool, labeled)
    assert int(scores.score.argmax()) == 17 and scores.score[17] == 1.0
    assert scores.entropy is None and scores.disagreement is None


def test_with_predictions_the_score_averages_the_parts_percentile_ranks() -> None:
    labeled = _unit([0.0, 90.0])
    pool = _unit([10.0, 45.0, 80.0, 200.0])
    probs = torch.tensor(
        [
            [[0.9, 0.1], [0.6, 0.4], [0.1, 0.9], [0.5, 0.5]],
            [[0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.5, 0.5]],
        ],
        dtype=torch.float64,
    )
    # hand-computed ranks: kNN distances 1-cos(10°), 1-cos(45°), 1-cos(10°), 1-cos(110°)
    knn_rank = torch.tensor([1.5, 3.0, 1.5, 4.0], dtype=torch.float64) / 4
    # mean predictions (0.85, 0.15), (0.45, 0.55), (0.15, 0.85), (0.5, 0.5): entropy ranks
    entropy_rank = torch.tensor([1.5, 3.0, 1.5, 4.0], dtype=torch.float64) / 4
    scores = ood_scores(pool, labeled, probs=probs)
    assert torch.allclose(scores.score, (knn_rank + entropy_rank) / 2)
    assert scores.score[3] == 1.0  # far from every label, and no class fits it
    every = ood_scores(pool, labeled, probs=probs, parts=("knn", "entropy", "disagreement"))
    expected = (knn_rank + entropy_rank + percentile_ranks(mutual_information(probs))) / 3
    assert torch.allclose(every.score, expected)
    assert torch.allclose(every.entropy, predictive_entropy(probs))


def test_auroc_counts_ordered_pairs() -> None:
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    is_ood = torch.tensor([False, False, True, True])
    assert auroc(scores, is_ood) == pytest.approx(0.75)  # 3 of 4 (out, in) pairs ordered
    assert auroc(torch.tensor([1.0, 1.0]), torch.tensor([False, True])) == pytest.approx(0.5)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="probs must be"):
        ood_scores(_unit([0.0, 1.0]), _unit([0.0]), probs=torch.ones(2, 3, 2) / 2)
    with pytest.raises(ValueError, match="subset"):
        ood_scores(_unit([0.0, 1.0]), _unit([0.0]), parts=("vibes",))
    with pytest.raises(ValueError, match="k >= 1"):
        knn_distance(_unit([0.0]), _unit([0.0]), k=0)
