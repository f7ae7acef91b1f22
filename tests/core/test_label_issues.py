"""Out-of-sample label judgement: K-fold and out-of-bag probabilities, cleanlab ranking."""

from __future__ import annotations

import math

import pytest
import torch

from activelearn.core.embedding_learner import EmbeddingLearner, EmbeddingLearnerConfig
from activelearn.core.label_issues import (
    find_label_issues,
    out_of_bag_probs,
    out_of_sample_probs,
    rank_label_issues,
    stratified_folds,
)

HEADS = EmbeddingLearner(EmbeddingLearnerConfig(members=3, propagate=False, label_keep=1.0))


def _two_clusters(per_class: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Two well-separated Gaussian clusters in 8-d: (2 * per_class, 8), (2 * per_class,)."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.zeros(2, 8)
    centers[0, 0], centers[1, 1] = 1.0, 1.0
    y = torch.arange(2).repeat_interleave(per_class)
    return centers[y] + 0.1 * torch.randn(len(y), 8, generator=gen), y


def test_three_flipped_labels_rank_first_and_get_their_true_class_suggested() -> None:
    x, y = _two_clusters()
    flipped = torch.tensor([3, 17, 44])
    noisy = y.clone()
    noisy[flipped] = 1 - noisy[flipped]
    # three heads judge each fold: one head alone can miss a flipped label near the border
    issues = find_label_issues(x, noisy, n_classes=2, seed=0, learner=HEADS, members_per_fold=3)
    assert set(issues.top(3).tolist()) == set(flipped.tolist())
    assert issues.suggested_label[flipped].tolist() == y[flipped].tolist()
    assert issues.flagged[flipped].all()
    others = torch.ones(len(y), dtype=torch.bool)
    others[flipped] = False
    assert issues.score[flipped].min() > issues.score[others].max()


def test_k_fold_never_lets_a_model_judge_a_label_it_trained_on() -> None:
    # Random labels on random 64-d points: a head fit on all 40 memorises them (D > N), so
    # in-sample it "agrees" with every label; out of sample it can only guess (chance = 0.5).
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 64, generator=gen)
    y = torch.randint(2, (40,), generator=gen)
    learner = EmbeddingLearner(
        EmbeddingLearnerConfig(
            members=3, propagate=False, label_keep=1.0, dropout=0.0, weight_decay=0.0, steps=200
        )
    )
    in_sample = learner.fit(x, y, n_classes=2, seed=0).predict_proba(x).mean(0)
    out_sample = out_of_sample_probs(x, y, n_classes=2, seed=0, learner=learner)
    rows = torch.arange(40)
    assert in_sample[rows, y].mean() > 0.9
    assert out_sample[rows, y].mean() < 0.65


def test_a_label_alone_in_its_class_is_not_judged() -> None:
    x, y = _two_clusters(per_class=10)
    y3 = torch.cat([y, torch.tensor([2])])
    x3 = torch.cat([x, torch.ones(1, 8)])
    probs = out_of_sample_probs(x3, y3, n_classes=3, seed=0, learner=HEADS)
    assert torch.isnan(probs[-1]).all() and not torch.isnan(probs[:-1]).any()
    issues = rank_label_issues(y3, probs)
    assert math.isnan(issues.score[-1]) and issues.suggested_label[-1] == -1
    assert not issues.flagged[-1] and 20 not in issues.ranked().tolist()


def test_stratified_folds_spread_every_class_over_the_folds() -> None:
    y = torch.tensor([0] * 7 + [1] * 2 + [2] * 11)
    fold = stratified_folds(y, 5, seed=3)
    assert fold.min() >= 0 and fold.max() < 5
    for c, n in ((0, 7), (1, 2), (2, 11)):
        counts = torch.bincount(fold[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1  # dealt round-robin
        assert int((counts > 0).sum()) == min(n, 5)
    assert torch.equal(fold, stratified_folds(y, 5, seed=3))


def test_out_of_bag_mean_matches_a_hand_computed_tensor() -> None:
    # 3 members, 3 samples, 2 classes
    probs = torch.tensor(
        [
            [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]],
            [[0.7, 0.3], [0.4, 0.6], [0.6, 0.4]],
            [[0.1, 0.9], [0.0, 1.0], [0.3, 0.7]],
        ]
    )
    in_bag = torch.tensor(
        [
            [True, False, True],
            [False, False, True],
            [False, True, True],
        ]
    )
    expected = torch.tensor(
        [
            [(0.7 + 0.1) / 2, (0.3 + 0.9) / 2],  # members 1 and 2
            [(0.2 + 0.4) / 2, (0.8 + 0.6) / 2],  # members 0 and 1
            [math.nan, math.nan],  # in every bag: not judged
        ],
        dtype=torch.float64,
    )
    got = out_of_bag_probs(probs, in_bag)
    assert torch.allclose(got[:2], expected[:2]) and torch.isnan(got[2]).all()


def test_self_confidence_score_is_one_minus_the_given_labels_probability() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = torch.tensor([0, 1, 2, 2])
    issues = rank_label_issues(labels, probs)
    assert torch.allclose(issues.score, torch.tensor([0.1, 0.3, 0.9, 0.2], dtype=torch.float64))
    assert issues.ranked().tolist() == [2, 1, 3, 0]
    assert issues.suggested_label.tolist() == [0, 1, 0, 2]


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="ranking method"):
        rank_label_issues(torch.tensor([0]), torch.tensor([[1.0, 0.0]]), method="vibes")
    with pytest.raises(ValueError, match="probability vectors"):
        rank_label_issues(torch.tensor([0]), torch.tensor([[0.7, 0.7]]))
    with pytest.raises(ValueError, match="in-bag"):
        out_of_bag_probs(torch.ones(2, 3, 2) / 2, torch.ones(3, 2, dtype=torch.bool))
