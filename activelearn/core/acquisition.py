"""Acquisition scores over ensemble predictions, and the selection strategies built on them.

Every scorer maps `probs` of shape (M, N, C) (member softmax outputs) to (N,) with the
convention HIGHER = MORE worth labeling. A 2-D (N, C) input is read as a single member.
Scores are computed in float64 and returned in the input's floating dtype; they are finite at
probabilities exactly 0 and 1 (0 log 0 = 0).

Batch selectors return indices in serving order: `top_k`, `random_selection`, `batchbald`
(Kirsch et al. 2019, exact for the ensemble's mixture while feasible) and `power_bald` (Kirsch
et al. 2023, "Stochastic Batch Acquisition"). The strategies a project can pick are built on
these in activelearn.core.strategies.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from activelearn.core.devices import wide_float

__all__ = [
    "SCORERS",
    "batchbald",
    "expected_entropy",
    "get_scorer",
    "least_confidence",
    "margin",
    "mutual_information",
    "power_bald",
    "predictive_entropy",
    "predictive_variance",
    "random_selection",
    "top_k",
    "uncertainty_summary",
    "variation_ratio",
]


def _as_probs(probs: Tensor) -> Tensor:
    """Validate and return probs as float64 (M, N, C) (float32 on MPS, which has no float64)."""
    if not isinstance(probs, Tensor):
        probs = torch.as_tensor(probs)
    if probs.ndim == 2:
        probs = probs.unsqueeze(0)
    if probs.ndim != 3:
        raise ValueError(f"probs must have shape (M, N, C) or (N, C); got {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise ValueError(f"probs must be a floating tensor; got {probs.dtype}")
    if probs.shape[0] == 0 or probs.shape[2] == 0:
        raise ValueError(f"probs needs at least one member and one class; got {tuple(probs.shape)}")
    return probs.to(wide_float(probs.device))


def _out_dtype(probs: Tensor) -> torch.dtype:
    return probs.dtype if isinstance(probs, Tensor) and probs.is_floating_point() else torch.float64


def _entropy(p: Tensor) -> Tensor:
    """Shannon entropy in nats over the last axis; xlogy makes 0 log 0 = 0."""
    return -torch.special.xlogy(p, p).sum(-1)


def predictive_entropy(probs: Tensor) -> Tensor:
    """Entropy of the mean prediction, H[E_m p_m]: total uncertainty. (M, N, C) -> (N,)."""
    p = _as_probs(probs)
    return _entropy(p.mean(0)).clamp_min(0.0).to(_out_dtype(probs))


def expected_entropy(probs: Tensor) -> Tensor:
    """Mean of the members' entropies, E_m H[p_m]: aleatoric uncertainty. (M, N, C) -> (N,)."""
    p = _as_probs(probs)
    return _entropy(p).mean(0).clamp_min(0.0).to(_out_dtype(probs))


def mutual_information(probs: Tensor) -> Tensor:
    """BALD (Houlsby et al. 2011): predictive minus expected entropy, epistemic uncertainty.

    Clamped at 0: by Jensen's inequality it is never negative, so anything below is rounding.
    """
    p = _as_probs(probs)
    mi = _entropy(p.mean(0)) - _entropy(p).mean(0)  # (N,)
    return mi.clamp_min(0.0).to(_out_dtype(probs))


def predictive_variance(probs: Tensor) -> Tensor:
    """Variance across members (population, divides by M), averaged over classes."""
    p = _as_probs(probs)
    return p.var(0, unbiased=False).mean(-1).to(_out_dtype(probs))


def margin(probs: Tensor) -> Tensor:
    """1 - (top1 - top2) of the mean prediction, so a SMALL margin scores HIGH. Range [0, 1]."""
    return _margin_of_mean(_as_probs(probs).mean(0)).to(_out_dtype(probs))


def _margin_of_mean(mean: Tensor) -> Tensor:
    if mean.shape[-1] < 2:
        return torch.zeros(mean.shape[0], dtype=mean.dtype, device=mean.device)
    top2 = mean.topk(2, dim=-1).values  # (N, 2)
    return (1.0 - (top2[:, 0] - top2[:, 1])).clamp(0.0, 1.0)


def uncertainty_summary(probs: Tensor) -> dict[str, Tensor]:
    """Every per-sample figure a round stores, from one pass over (M, N, C) `probs`.

    The mean prediction and the entropies are computed once (the separate scorers would each
    redo them). Returns (N,) tensors on probs' device, in float64 (float32 on MPS):
    mutual_information, predictive_entropy, expected_entropy, variance, margin, confidence;
    predicted_class (long); and mean_probs (N, C).
    """
    p = _as_probs(probs)
    mean = p.mean(0)  # (N, C)
    total = _entropy(mean)
    aleatoric = _entropy(p).mean(0)
    confidence, predicted = mean.max(-1)
    return {
        "mutual_information": (total - aleatoric).clamp_min(0.0),
        "predictive_entropy": total.clamp_min(0.0),
        "expected_entropy": aleatoric.clamp_min(0.0),
        "variance": p.var(0, unbiased=False).mean(-1),
        "margin": _margin_of_mean(mean),
        "confidence": confidence,
        "predicted_class": predicted,
        "mean_probs": mean,
    }


def least_confidence(probs: Tensor) -> Tensor:
    """1 - max_c of the mean prediction."""
    p = _as_probs(probs).mean(0)
    return (1.0 - p.max(-1).values).clamp_min(0.0).to(_out_dtype(probs))


def variation_ratio(probs: Tensor) -> Tensor:
    """1 - (members voting for the modal class) / M (Freeman 1965); 0 when all members agree."""
    p = _as_probs(probs)
    m, _, c = p.shape
    votes = torch.nn.functional.one_hot(p.argmax(-1), c).sum(0)  # (N, C)
    return (1.0 - votes.max(-1).values.to(torch.float64) / m).to(_out_dtype(probs))


SCORERS: dict[str, Callable[[Tensor], Tensor]] = {
    "predictive_entropy": predictive_entropy,
    "expected_entropy": expected_entropy,
    "mutual_information": mutual_information,
    "predictive_variance": predictive_variance,
    "margin": margin,
    "least_confidence": least_confidence,
    "variation_ratio": variation_ratio,
    # short aliases
    "bald": mutual_information,
    "entropy": predictive_entropy,
    "variance": predictive_variance,
}


def _unknown(name: str, known: tuple[str, ...] | list[str]) -> ValueError:
    return ValueError(f"unknown acquisition {name!r}; known: {', '.join(known)}")


def get_scorer(name: str) -> Callable[[Tensor], Tensor]:
    """The scorer registered under `name`; ValueError listing the known names otherwise."""
    try:
        return SCORERS[name]
    except KeyError:
        raise _unknown(name, list(SCORERS)) from None


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative integer; got {k!r}")
    return min(k, n)


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    # Never the global RNG: without a generator a selection is reproducible (seed 0).
    return generator if generator is not None else torch.Generator().manual_seed(0)


def top_k(scores: Tensor, k: int) -> Tensor:
    """Indices of the k highest scores, highest first; ties go to the lower index."""
    scores = torch.as_tensor(scores)
    k = _check_k(k, scores.shape[0])
    order = torch.sort(scores.to(torch.float64), descending=True, stable=True).indices
    return order[:k].to(torch.long)


def random_selection(n: int, k: int, *, generator: torch.Generator | None = None) -> Tensor:
    """k of n indices uniformly without replacement."""
    k = _check_k(k, n)
    return torch.randperm(n, generator=_default_generator(generator))[:k].to(torch.long)


def power_bald(
    probs: Tensor, k: int, *, beta: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Stochastic power-BALD: k indices drawn without replacement with P ∝ MI^beta.

    Gumbel-top-k (Kool et al. 2019) over beta * log MI; MI is floored at 1e-30 so samples with
    no epistemic uncertainty come last rather than in arbitrary order.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0; got {beta}")
    mi = mutual_information(_as_probs(probs))  # (N,) float64
    k = _check_k(k, mi.shape[0])
    uniform = torch.rand(mi.shape[0], generator=_default_generator(generator), dtype=torch.float64)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-300, 1.0 - 1e-16)))
    keys = beta * torch.log(mi.clamp_min(1e-30)) + gumbel
    return top_k(keys, k)


def batchbald(
    probs: Tensor,
    k: int,
    *,
    candidates: int | None = None,
    num_samples: int = 1000,
    max_configs: int = 2**16,
    generator: torch.Generator | None = None,
    chunk_size: int = 256,
) -> Tensor:
    """Greedy BatchBALD (Kirsch et al. 2019) for a deep ensemble.

    The joint predictive of a batch under an ensemble is the mixture
    p(y_1..y_b) = 1/M Σ_m Π_i p_m(y_i | x_i), and the batch score is
    a(B) = H[y_1..y_b] - Σ_i E_m H[p_m(y_i | x_i)]. Each greedy step adds the candidate j that
    maximises H[y_B, y_j] - E_m H[p_m(y_j)].

    H[y_B, y_j] is computed exactly by enumerating the C^(|B|+1) class configurations while
    that number is at most `max_configs`; beyond that, `num_samples` configurations of y_B are
    drawn from the mixture (member uniformly, then each label from that member) and the entropy
    is estimated by importance weighting (paper eq. 12-13), the per-member likelihoods being
    exact. Candidates are the `candidates` highest-BALD samples (default max(10 k, 100)); the
    result is in greedy order, so its first index is the top-BALD sample.
    """
    p = _as_probs(probs)  # (M, N, C)
    m, n, c = p.shape
    k = _check_k(k, n)
    if k == 0:
        return torch.zeros(0, dtype=torch.long)
    if num_samples < 1 or max_configs < c:
        raise ValueError("num_samples must be >= 1 and max_configs >= the number of classes")
    gen = _default_generator(generator)
    mi = mutual_information(p)
    n_cand = min(n, max(10 * k, 100) if candidates is None else max(candidates, k))
    cand = top_k(mi, n_cand)  # (K,)
    pc = p[:, cand, :]  # (M, K, C)
    cond_entropy = _entropy(pc).mean(0)  # (K,)
    available = torch.ones(n_cand, dtype=torch.bool)
    chosen: list[int] = []

    # Exact state: joint[m, config] = Π_i p_m(y_i) over the chosen batch (M, K_cfg).
    joint: Tensor | None = torch.ones(m, 1, dtype=torch.float64)
    # Sampled state: log Π_i p_m(y_i^s) (M, S) and the member that generated sample s (S,).
    log_joint: Tensor | None = None
    sample_member: Tensor | None = None

    for _ in range(k):
        scores = torch.full((n_cand,), -math.inf, dtype=torch.float64)
        if joint is not None and joint.shape[1] * c <= max_configs:
            for lo in range(0, n_cand, chunk_size):
                block = pc[:, lo : lo + chunk_size, :]  # (M, b, C)
                mix = torch.einsum("mk,mbc->bkc", joint, block) / m  # (b, K_cfg, C)
                scores[lo : lo + chunk_size] = _entropy(mix.flatten(1))
        else:
            if log_joint is None:
                log_joint, sample_member = _sample_configs(p, cand, chosen, num_samples, gen)
                joint = None
            shift = log_joint.max(0).values  # (S,)
            weights = torch.exp(log_joint - shift)  # (M, S), scaled Π_i p_m(y_i^s)
            denom = weights.sum(0)  # (S,)
            for lo in range(0, n_cand, chunk_size):
                block = pc[:, lo : lo + chunk_size, :]  # (M, b, C)
                num = torch.einsum("ms,mbc->bsc", weights, block)  # (b, S, C)
                ratio = num / denom[None, :, None]
                log_pyc = shift[None, :, None] + torch.log((num / m).clamp_min(1e-300))
                scores[lo : lo + chunk_size] = -(ratio * log_pyc).sum(-1).mean(-1)
        scores = scores - cond_entropy
        scores[~available] = -math.inf
        j = int(torch.argmax(scores))
        chosen.append(j)
        available[j] = False
        if joint is not None:
            joint = (joint[:, :, None] * pc[:, j, None, :]).reshape(m, -1)
        else:
            assert log_joint is not None and sample_member is not None
            labels = _draw_labels(pc[:, j, :], sample_member, gen)  # (S,)
            log_joint = log_joint + torch.log(pc[:, j, labels].clamp_min(1e-300))
    return cand[torch.tensor(chosen, dtype=torch.long)]


def _draw_labels(p_point: Tensor, sample_member: Tensor, gen: torch.Generator) -> Tensor:
    """One label per configuration sample from the member that generated it. p_point (M, C)."""
    return torch.multinomial(p_point[sample_member].clamp_min(0.0), 1, generator=gen).squeeze(1)


def _sample_configs(
    p: Tensor, cand: Tensor, chosen: list[int], num_samples: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Draw configurations of the chosen batch from the ensemble mixture; (M, S) log-lik, (S,)."""
    m = p.shape[0]
    sample_member = torch.randint(0, m, (num_samples,), generator=gen)
    log_joint = torch.zeros(m, num_samples, dtype=torch.float64)
    for j in chosen:
        p_point = p[:, cand[j], :]  # (M, C)
        labels = _draw_labels(p_point, sample_member, gen)
        log_joint = log_joint + torch.log(p_point[:, labels].clamp_min(1e-300))
    return log_joint, sample_member
