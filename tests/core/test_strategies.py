"""The strategy registry: every strategy's contract, and balanced_bald on a hand-made case."""

from __future__ import annotations

import pytest
import torch

from activelearn.core import acquisition as acq
from activelearn.core.strategies import (
    BATCH_PRIORITY_BASE,
    RANDOM_REASON,
    STRATEGIES,
    PoolContext,
    get_strategy,
    lift_batch,
)


def _probs(rows: list[list[list[float]]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)  # (M, N, C)


def test_every_strategy_has_a_label_and_a_full_priority() -> None:
    gen = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(3, 40, 5, generator=gen), -1)
    context = PoolContext(
        rankable=torch.ones(40, dtype=torch.bool), n_classes=5, features=torch.randn(40, 4)
    )
    for name, strategy in STRATEGIES.items():
        assert strategy.name == name and strategy.label
        assert (strategy.priority is None) == strategy.needs_features, name
        ranking = strategy.rank(probs, 6, context=context, generator=torch.Generator())
        priority = ranking.priority
        assert priority.shape == (40,) and priority.dtype == torch.float64, name
        lifted = int((priority >= BATCH_PRIORITY_BASE).sum())
        assert lifted == (6 if strategy.batch_aware else 0), name
        if strategy.priority is not None:  # rank() over all rows is the plain priority
            plain = strategy.priority(probs, 6, torch.Generator())
            assert torch.equal(priority, plain), name


def test_without_a_model_probability_strategies_draw_at_random() -> None:
    rankable = torch.tensor([True, False, True, True, False, True])
    context = PoolContext(rankable=rankable, n_classes=2)
    ranking = get_strategy("bald").rank(None, 2, context=context, generator=torch.Generator())
    assert torch.isinf(ranking.priority[~rankable]).all()  # labeled rows are never served
    assert len(ranking.reasons) == 2 and set(ranking.reasons.values()) == {RANDOM_REASON}
    assert all(bool(rankable[i]) for i in ranking.reasons)
    with pytest.raises(ValueError, match="needs the pool's embeddings"):
        get_strategy("typiclust").rank(None, 2, context=context)


def three_clusters() -> tuple[torch.Tensor, list[int]]:
    """46 points on three short lines far apart: cluster 0 (rows 0-9) around (0, 0), cluster 1
    (rows 10-30) around (10, 0), cluster 2 (rows 31-45) around (0, 10), spaced 0.01 along x.
    Each cluster has at most 21 points, so typicality's 20 neighbours are all the others, and on
    an evenly spaced line of odd length the middle point alone has the smallest mean distance
    to them: rows 20 and 38. Returns the points and the clusters' middle rows."""

    def line(center: tuple[float, float], n: int) -> torch.Tensor:
        offsets = (torch.arange(n, dtype=torch.float32) - (n - 1) / 2) * 0.01
        return torch.stack([center[0] + offsets, torch.full((n,), center[1])], dim=1)

    points = torch.cat([line((0, 0), 10), line((10, 0), 21), line((0, 10), 15)])
    return points, [4, 20, 38]


def test_typiclust_takes_the_most_typical_sample_of_the_unlabeled_clusters() -> None:
    points, middles = three_clusters()
    rankable = torch.ones(46, dtype=torch.bool)
    rankable[0] = False  # one label, in cluster 0
    context = PoolContext(rankable=rankable, n_classes=2, features=points, seed=0)
    ranking = get_strategy("typiclust").rank(None, 2, context=context, generator=torch.Generator())
    order = torch.argsort(ranking.priority, descending=True)[:2].tolist()
    # Largest unlabeled cluster first (21 images), then the other unlabeled one (15).
    assert order == [middles[1], middles[2]]
    assert ranking.reasons == {
        middles[1]: "most typical of an unlabeled cluster of 21 images",
        middles[2]: "most typical of an unlabeled cluster of 15 images",
    }


def test_auto_is_typiclust_with_few_labels_then_bald_per_cluster() -> None:
    points, middles = three_clusters()
    # Two members that agree everywhere except on row 40 (cluster 2): MI is highest there.
    probs = torch.full((2, 46, 2), 0.5, dtype=torch.float64)
    probs[0, 40], probs[1, 40] = torch.tensor([0.99, 0.01]), torch.tensor([0.01, 0.99])
    few = torch.ones(46, dtype=torch.bool)
    few[0] = False
    ranking = get_strategy("auto").rank(
        probs, 2, context=PoolContext(rankable=few, n_classes=2, features=points)
    )
    assert set(ranking.reasons) == {middles[1], middles[2]}  # 1 label < 3 per class: typical
    many = torch.ones(46, dtype=torch.bool)
    many[[0, 1, 2, 10, 11, 12]] = False  # 6 labels = 3 per class: BALD per cluster
    ranking = get_strategy("auto").rank(
        probs, 2, context=PoolContext(rankable=many, n_classes=2, features=points)
    )
    first = int(torch.argmax(ranking.priority))
    assert first == 40 and "disagree most here" in ranking.reasons[40]
    assert len(ranking.reasons) == 2 and all(bool(many[i]) for i in ranking.reasons)


def test_balanced_bald_takes_classes_in_turn() -> None:
    # Two members, three classes. Samples 0-2 are predicted class 0 with high disagreement,
    # sample 3 class 1 with less, sample 4 class 2 with the least; MI order is 0, 1, 2, 3, 4.
    members = [
        [[1.00, 0.0, 0.0], [0.98, 0.02, 0.0], [0.96, 0.04, 0.0], [0.2, 0.8, 0.0], [0.0, 0.1, 0.9]],
        [[0.50, 0.5, 0.0], [0.52, 0.48, 0.0], [0.54, 0.46, 0.0], [0.5, 0.5, 0.0], [0.0, 0.2, 0.8]],
    ]
    probs = _probs(members)
    mi = acq.mutual_information(probs)
    assert torch.equal(torch.argsort(mi, descending=True), torch.tensor([0, 1, 2, 3, 4]))
    strategy = get_strategy("balanced_bald")
    # Round robin: class 0's best (0), class 1's (3), class 2's (4), then class 0's next (1).
    assert strategy.select(probs, 4).tolist() == [0, 3, 4, 1]
    # Plain BALD would have taken three samples of class 0 first.
    assert get_strategy("bald").select(probs, 4).tolist() == [0, 1, 2, 3]
    # The samples left out keep their mutual information as priority.
    priority = strategy.priority(probs, 4, None)
    assert priority[2] == mi[2] and (priority[[0, 3, 4, 1]] >= BATCH_PRIORITY_BASE).all()


def test_lift_batch_keeps_the_selection_order() -> None:
    lifted = lift_batch(torch.tensor([0.5, 0.1, 0.9], dtype=torch.float64), torch.tensor([1, 0]))
    assert lifted.tolist() == [BATCH_PRIORITY_BASE + 1, BATCH_PRIORITY_BASE + 2, 0.9]


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="unknown acquisition strategy 'nope'; known: bald"):
        get_strategy("nope")
