"""The strategy registry: every strategy's contract, and balanced_bald on a hand-made case."""

from __future__ import annotations

import pytest
import torch

from activelearn.core import acquisition as acq
from activelearn.core.strategies import BATCH_PRIORITY_BASE, STRATEGIES, get_strategy, lift_batch


def _probs(rows: list[list[list[float]]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)  # (M, N, C)


def test_every_strategy_has_a_label_and_a_full_priority() -> None:
    probs = torch.softmax(torch.randn(3, 40, 5, generator=torch.Generator().manual_seed(2)), -1)
    for name, strategy in STRATEGIES.items():
        assert strategy.name == name and strategy.label
        priority = strategy.priority(probs, 6, torch.Generator().manual_seed(0))
        assert priority.shape == (40,) and priority.dtype == torch.float64, name
        lifted = int((priority >= BATCH_PRIORITY_BASE).sum())
        assert lifted == (6 if strategy.batch_aware else 0), name


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
