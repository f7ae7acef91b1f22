"""Evaluation metrics: accuracy, NLL, Brier, calibration (ECE), selective risk, OOD AUROC.

`probs` is the (N, C) mean prediction; an (M, N, C) ensemble output is averaged over members
first. `y` is (N,) integer labels. Everything is computed in float64 and returned as float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "ReliabilityBins",
    "accuracy",
    "auroc",
    "brier",
    "brier_per_sample",
    "expected_calibration_error",
    "nll",
    "nll_per_sample",
    "risk_coverage",
    "standard_error",
]

_LOG_FLOOR = 1e-12  # NLL of a probability-0 label is -log(1e-12) ≈ 27.6, not infinity


def _check(probs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    probs = torch.as_tensor(probs)
    y = torch.as_tensor(y)
    if probs.ndim == 3:
        probs = probs.mean(0)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C) or (M, N, C); got {tuple(probs.shape)}")
    if y.ndim != 1 or y.shape[0] != probs.shape[0]:
        raise ValueError(f"y must be (N,) with N={probs.shape[0]}; got {tuple(y.shape)}")
    if y.shape[0] == 0:
        raise ValueError("metrics need at least one sample")
    if y.dtype.is_floating_point or int(y.min()) < 0 or int(y.max()) >= probs.shape[1]:
        raise ValueError(f"y must hold integer labels in [0, {probs.shape[1]})")
    return probs.to(torch.float64), y.to(torch.long)


def accuracy(probs: Tensor, y: Tensor) -> float:
    """Fraction of samples whose argmax is the label."""
    p, y = _check(probs, y)
    return float((p.argmax(-1) == y).to(torch.float64).mean())


def nll(probs: Tensor, y: Tensor) -> float:
    """Mean negative log-likelihood of the labels (nats), probabilities floored at 1e-12."""
    return float(nll_per_sample(probs, y).mean())


def nll_per_sample(probs: Tensor, y: Tensor) -> Tensor:
    """Each sample's negative log-likelihood (N,) in float64; see `nll`."""
    p, y = _check(probs, y)
    return -torch.log(p.gather(1, y[:, None]).squeeze(1).clamp_min(_LOG_FLOOR))


def brier(probs: Tensor, y: Tensor) -> float:
    """Multi-class Brier score: mean over samples of Σ_c (p_c - 1[y=c])², in [0, 2]."""
    return float(brier_per_sample(probs, y).mean())


def brier_per_sample(probs: Tensor, y: Tensor) -> Tensor:
    """Each sample's Σ_c (p_c - 1[y=c])² (N,) in float64; see `brier`."""
    p, y = _check(probs, y)
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).to(torch.float64)
    return ((p - onehot) ** 2).sum(-1)


@dataclass(frozen=True)
class ReliabilityBins:
    """Reliability diagram: bin b covers (edges[b], edges[b+1]] (the first bin includes 0).

    confidence/accuracy are the bin means, NaN for an empty bin; counts the samples per bin.
    """

    edges: list[float]
    confidence: list[float]
    accuracy: list[float]
    counts: list[int]


def expected_calibration_error(
    probs: Tensor, y: Tensor, *, n_bins: int = 15
) -> tuple[float, ReliabilityBins]:
    """ECE with equal-width confidence bins (Guo et al. 2017): Σ_b n_b/N |acc_b - conf_b|."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    p, y = _check(probs, y)
    confidence, predicted = p.max(-1)
    correct = (predicted == y).to(torch.float64)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    # right=False: index b with edges[b] < conf <= edges[b+1]; conf == 0 goes to bin 0.
    index = torch.bucketize(confidence, edges[1:-1], right=False)
    counts = torch.bincount(index, minlength=n_bins)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, confidence)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct)
    nonzero = counts > 0
    denom = counts.clamp_min(1).to(torch.float64)
    conf_mean = torch.where(nonzero, conf_sum / denom, torch.full_like(conf_sum, math.nan))
    acc_mean = torch.where(nonzero, acc_sum / denom, torch.full_like(acc_sum, math.nan))
    gaps = (acc_sum - conf_sum).abs()  # = n_b |acc_b - conf_b|
    ece = float(gaps.sum() / y.shape[0])
    bins = ReliabilityBins(
        edges=edges.tolist(),
        confidence=conf_mean.tolist(),
        accuracy=acc_mean.tolist(),
        counts=[int(c) for c in counts],
    )
    return ece, bins


def risk_coverage(confidence: Tensor, correct: Tensor) -> tuple[Tensor, Tensor, float]:
    """Risk-coverage curve of selective classification (Geifman & El-Yaniv 2017) and its area.

    Samples are accepted in order of decreasing confidence; a point is emitted at every distinct
    confidence threshold (tied samples are accepted together), so the result does not depend on
    the order of ties. Returns (coverage, risk, AURC), coverage ascending to 1; AURC is the mean
    over samples of the risk at the threshold that first accepts them (lower is better).
    """
    confidence = torch.as_tensor(confidence).to(torch.float64).flatten()
    correct = torch.as_tensor(correct).flatten()
    if confidence.shape != correct.shape or confidence.numel() == 0:
        raise ValueError("confidence and correct must be non-empty and of equal length")
    n = confidence.numel()
    order = torch.sort(confidence, descending=True, stable=True).indices
    sorted_conf = confidence[order]
    errors = torch.cumsum(1.0 - correct[order].to(torch.float64), 0)  # (N,)
    accepted = torch.arange(1, n + 1, dtype=torch.float64)
    group_end = torch.ones(n, dtype=torch.bool)
    group_end[:-1] = sorted_conf[1:] != sorted_conf[:-1]
    ends = torch.nonzero(group_end).flatten()
    coverage = accepted[ends] / n
    risk = errors[ends] / accepted[ends]
    # Each sample's group: number of group ends strictly before it.
    group_of = torch.cumsum(group_end.to(torch.long), 0) - group_end.to(torch.long)
    aurc = float(risk[group_of].mean())
    return coverage.to(torch.float32), risk.to(torch.float32), aurc


def auroc(scores_in: Tensor, scores_out: Tensor) -> float:
    """AUROC of a score separating out- (positive) from in-distribution samples.

    = P(score_out > score_in) + P(tie) / 2, the Mann-Whitney statistic with mid-ranks.
    """
    a = torch.as_tensor(scores_in).to(torch.float64).flatten()
    b = torch.as_tensor(scores_out).to(torch.float64).flatten()
    if a.numel() == 0 or b.numel() == 0:
        raise ValueError("auroc needs at least one in- and one out-of-distribution score")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("auroc scores must be finite")
    values = torch.cat([a, b])
    sorted_values, order = torch.sort(values, stable=True)
    _, inverse, counts = torch.unique_consecutive(
        sorted_values, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).to(torch.float64)
    mid_rank = ends - (counts.to(torch.float64) - 1.0) / 2.0  # 1-based average rank per group
    ranks = torch.empty_like(values)
    ranks[order] = mid_rank[inverse]
    n_in, n_out = a.numel(), b.numel()
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def standard_error(values: Tensor) -> float:
    """Standard error of the mean, std (ddof=1) / sqrt(n); NaN for fewer than 2 values."""
    v = torch.as_tensor(values).to(torch.float64).flatten()
    if v.numel() < 2:
        return math.nan
    return float(v.std(unbiased=True) / math.sqrt(v.numel()))
