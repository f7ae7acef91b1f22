"""Metrics: hand-computed values, calibration of a calibrated set, risk-coverage, AUROC."""

from __future__ import annotations

import math

import pytest
import torch

from activelearn.core import metrics


def test_accuracy_nll_brier_hand_computed() -> None:
    probs = torch.tensor([[0.8, 0.2], [0.4, 0.6], [1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    assert metrics.accuracy(probs, y) == pytest.approx(1 / 3)
    expected_nll = -(math.log(0.8) + math.log(0.4) + math.log(1e-12)) / 3
    assert metrics.nll(probs, y) == pytest.approx(expected_nll)
    expected_brier = (2 * 0.2**2 + 2 * 0.6**2 + 2 * 1.0) / 3
    assert metrics.brier(probs, y) == pytest.approx(expected_brier)


def test_ensemble_probs_are_averaged() -> None:
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert metrics.nll(probs, torch.tensor([1])) == pytest.approx(math.log(2))


def test_ece_of_a_calibrated_set_is_near_zero() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    confidence = 0.5 + 0.5 * torch.rand(n, generator=gen, dtype=torch.float64)
    correct = torch.rand(n, generator=gen, dtype=torch.float64) < confidence
    probs = torch.stack([confidence, 1 - confidence], dim=1)
    y = torch.where(correct, 0, 1)
    ece, bins = metrics.expected_calibration_error(probs, y)
    assert ece < 0.01
    assert len(bins.edges) == 16 and len(bins.counts) == 15 and sum(bins.counts) == n
    assert math.isnan(bins.confidence[0])  # no confidence below 0.5 with two classes
    filled = [i for i, c in enumerate(bins.counts) if c]
    for i in filled:
        assert bins.edges[i] <= bins.confidence[i] <= bins.edges[i + 1]


def test_ece_of_an_overconfident_model() -> None:
    probs = torch.tensor([[0.9, 0.1]] * 10)
    y = torch.tensor([0] * 5 + [1] * 5)
    ece, bins = metrics.expected_calibration_error(probs, y, n_bins=10)
    assert ece == pytest.approx(0.4)
    assert bins.counts[8] == 10  # 0.9 sits in (0.8, 0.9]


def test_risk_coverage_hand_computed() -> None:
    confidence = torch.tensor([0.9, 0.8, 0.7, 0.6])
    correct = torch.tensor([True, False, True, True])
    coverage, risk, aurc = metrics.risk_coverage(confidence, correct)
    torch.testing.assert_close(coverage, torch.tensor([0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(risk, torch.tensor([0.0, 0.5, 1 / 3, 0.25]))
    assert aurc == pytest.approx((0 + 0.5 + 1 / 3 + 0.25) / 4)


def test_risk_coverage_ties_do_not_depend_on_order() -> None:
    a = metrics.risk_coverage(torch.tensor([0.5, 0.5, 0.9]), torch.tensor([1, 0, 1]))
    b = metrics.risk_coverage(torch.tensor([0.5, 0.5, 0.9]), torch.tensor([0, 1, 1]))
    assert a[2] == pytest.approx(b[2])
    assert a[0].tolist() == pytest.approx([1 / 3, 1.0])


def test_auroc() -> None:
    assert metrics.auroc(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])) == 1.0
    assert metrics.auroc(torch.tensor([0.3, 0.4]), torch.tensor([0.1, 0.2])) == 0.0
    assert metrics.auroc(torch.tensor([0.5, 0.5]), torch.tensor([0.5])) == 0.5
    # 0.3 beats 0.1 and 0.2 (2 wins), 0.2 ties 0.2 and beats 0.1 (1.5): 3.5 / 4.
    assert metrics.auroc(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.2])) == pytest.approx(0.875)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, generator=gen), torch.randn(200, generator=gen) + 0.5
    brute = ((b[None, :] > a[:, None]).double() + 0.5 * (b[None, :] == a[:, None]).double()).mean()
    assert metrics.auroc(a, b) == pytest.approx(float(brute))


def test_standard_error() -> None:
    values = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert metrics.standard_error(values) == pytest.approx(math.sqrt(1 / 3) / 2)
    assert math.isnan(metrics.standard_error(torch.tensor([1.0])))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="labels"):
        metrics.accuracy(torch.rand(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="at least one"):
        metrics.auroc(torch.tensor([]), torch.tensor([1.0]))
