"""Temperature scaling fitted by NLL, checked against closed-form optima."""

from __future__ import annotations

import pytest
import torch

from activelearn.core.calibration import fit_temperature, sharpen
from activelearn.core.metrics import nll


def _two_class(p: float, correct: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row (p, 1 - p); the first `correct` labels are class 0, the rest class 1."""
    probs = torch.tensor([[p, 1 - p]] * total, dtype=torch.float64)
    labels = torch.tensor([0] * correct + [1] * (total - correct))
    return probs, labels


def test_overconfident_rows_get_the_closed_form_temperature() -> None:
    # q(T) = 0.9^(1/T) / (0.9^(1/T) + 0.1^(1/T)) must equal the hit rate 3/4:
    # 9^(1/T) = 3, so T = log 9 / log 3 = 2
    probs, labels = _two_class(0.9, 3, 4)
    assert fit_temperature(probs, labels) == pytest.approx(2.0, rel=1e-6)


def test_calibrated_rows_keep_temperature_one_and_underconfident_ones_sharpen() -> None:
    assert fit_temperature(*_two_class(0.75, 3, 4)) == pytest.approx(1.0, rel=1e-6)
    # 0.6 with a 90% hit rate: (1.5)^(1/T) = 9, T = log 1.5 / log 9
    expected = torch.log(torch.tensor(1.5)) / torch.log(torch.tensor(9.0))
    assert fit_temperature(*_two_class(0.6, 9, 10)) == pytest.approx(float(expected), rel=1e-6)


def test_labels_drawn_at_a_known_temperature_recover_it() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(4000, 5, generator=gen, dtype=torch.float64), -1)
    labels = torch.multinomial(sharpen(probs, 1.5), 1, generator=gen).squeeze(1)
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(1.5, rel=0.1)
    best = nll(sharpen(probs, t), labels)
    assert best <= nll(probs, labels) + 1e-12
    assert best <= min(nll(sharpen(probs, t * f), labels) for f in (0.9, 1.1)) + 1e-12


def test_unjudged_rows_are_refused() -> None:
    probs = torch.tensor([[0.5, 0.5], [float("nan"), float("nan")]])
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(probs, torch.tensor([0, 1]))
