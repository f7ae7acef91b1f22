"""Acquisition scores and selection: hand-computed cases, properties, registry, batch methods."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from activelearn.core import acquisition as acq
from activelearn.core.strategies import STRATEGIES, PoolContext, get_strategy

LN2 = math.log(2.0)


def _probs(seed: int, m: int = 5, n: int = 40, c: int = 4, temperature: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(m, n, c, generator=gen) * 3.0 / temperature, dim=-1)


def test_two_members_certain_of_different_classes() -> None:
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (M=2, N=1, C=2)
    assert acq.mutual_information(probs).item() == pytest.approx(LN2)
    assert acq.predictive_entropy(probs).item() == pytest.approx(LN2)
    assert acq.expected_entropy(probs).item() == pytest.approx(0.0)
    assert acq.predictive_variance(probs).item() == pytest.approx(0.25)
    assert acq.margin(probs).item() == pytest.approx(1.0)
    assert acq.least_confidence(probs).item() == pytest.approx(0.5)
    assert acq.variation_ratio(probs).item() == pytest.approx(0.5)


def test_agreeing_uncertain_members_are_aleatoric() -> None:
    probs = torch.full((3, 1, 2), 0.5)
    assert acq.mutual_information(probs).item() == pytest.approx(0.0, abs=1e-7)
    assert acq.expected_entropy(probs).item() == pytest.approx(LN2)
    assert acq.variation_ratio(probs).item() == 0.0


def test_margin_is_one_minus_top_two_gap() -> None:
    probs = torch.tensor([[[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]])
    torch.testing.assert_close(acq.margin(probs), torch.tensor([0.5, 0.95]))


def test_exact_zeros_and_ones_are_finite() -> None:
    probs = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    for name, scorer in acq.SCORERS.items():
        out = scorer(probs)
        assert out.shape == (2,), name
        assert torch.isfinite(out).all(), name
    assert acq.mutual_information(probs)[0].item() == 0.0


def test_two_dimensional_input_is_one_member() -> None:
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    torch.testing.assert_close(acq.predictive_entropy(probs), torch.tensor([LN2, 0.0]))
    assert (acq.mutual_information(probs) == 0).all()


def test_dtype_is_preserved() -> None:
    assert acq.mutual_information(_probs(0).double()).dtype == torch.float64
    assert acq.mutual_information(_probs(0)).dtype == torch.float32


prob_arrays = st.tuples(
    st.integers(1, 4),
    st.integers(1, 6),
    st.integers(2, 5),
    st.integers(0, 2**31 - 1),
    st.sampled_from([0.05, 1.0, 20.0]),
)


def _from(params: tuple[int, int, int, int, float]) -> torch.Tensor:
    m, n, c, seed, scale = params
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(m, n, c, generator=gen) * scale, dim=-1)
    # Push some entries to exact 0/1 one-hots.
    hard = torch.rand(m, n, generator=gen) < 0.3
    onehot = torch.nn.functional.one_hot(probs.argmax(-1), c).float()
    return torch.where(hard[..., None], onehot, probs)


@settings(max_examples=60, deadline=None)
@given(prob_arrays)
def test_entropy_ranges_and_nonnegative_mi(params) -> None:
    probs = _from(params)
    c = probs.shape[-1]
    tol = 1e-5
    for name in ("predictive_entropy", "expected_entropy"):
        h = acq.SCORERS[name](probs)
        assert (h >= -tol).all() and (h <= math.log(c) + tol).all(), name
    mi = acq.mutual_information(probs)
    assert (mi >= -1e-6).all()
    assert (mi <= acq.predictive_entropy(probs) + tol).all()
    for name, scorer in acq.SCORERS.items():
        assert not torch.isnan(scorer(probs)).any(), name
    for name in ("margin", "least_confidence", "variation_ratio"):
        out = acq.SCORERS[name](probs)
        assert (out >= 0).all() and (out <= 1 + tol).all(), name


@settings(max_examples=40, deadline=None)
@given(prob_arrays, st.randoms(use_true_random=False))
def test_invariant_to_member_order(params, rnd) -> None:
    probs = _from(params)
    order = list(range(probs.shape[0]))
    rnd.shuffle(order)
    for name, scorer in acq.SCORERS.items():
        torch.testing.assert_close(scorer(probs[order]), scorer(probs), msg=name)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["random", "batchbald", "power_bald"]))
def test_selection_is_deterministic_for_a_seed(seed, strategy) -> None:
    probs = _probs(seed % 1000, n=30)
    first = get_strategy(strategy).select(probs, 5, generator=torch.Generator().manual_seed(seed))
    again = get_strategy(strategy).select(probs, 5, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(first, again)
    assert first.dtype == torch.long and len(set(first.tolist())) == 5


def test_registry_aliases_and_unknown_names() -> None:
    assert acq.get_scorer("bald") is acq.mutual_information
    assert acq.get_scorer("entropy") is acq.predictive_entropy
    assert acq.get_scorer("variance") is acq.predictive_variance
    with pytest.raises(
        ValueError, match=r"unknown acquisition 'nope'; known: .*mutual_information"
    ):
        acq.get_scorer("nope")
    with pytest.raises(ValueError, match=r"unknown acquisition strategy 'nope'; .*batchbald"):
        get_strategy("nope")
    assert {"random", "batchbald", "power_bald", "balanced_bald"} < set(STRATEGIES)


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        acq.mutual_information(torch.rand(3))
    with pytest.raises(ValueError, match="k must be"):
        get_strategy("bald").select(_probs(0), -1)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_returns_k_distinct_indices(strategy: str) -> None:
    probs = _probs(3, n=25)
    chosen = get_strategy(strategy)
    context = None
    if chosen.needs_features:  # typiclust, auto: the pool's embeddings, nothing labeled yet
        features = torch.randn(25, 6, generator=torch.Generator().manual_seed(5))
        context = PoolContext(
            rankable=torch.ones(25, dtype=torch.bool), n_classes=4, features=features
        )
    picked = chosen.select(probs, 7, generator=torch.Generator().manual_seed(1), context=context)
    assert picked.shape == (7,) and picked.dtype == torch.long
    assert len(set(picked.tolist())) == 7 and picked.max() < 25
    assert chosen.select(probs, 100, context=context).shape == (25,)  # k is capped at N
    assert chosen.select(probs, 0, context=context).shape == (0,)


def test_top_k_orders_by_score_with_stable_ties() -> None:
    probs = _probs(4)
    picked = get_strategy("bald").select(probs, 10)
    mi = acq.mutual_information(probs)
    assert torch.equal(picked, torch.sort(mi, descending=True, stable=True).indices[:10])
    assert torch.equal(acq.top_k(torch.tensor([1.0, 2.0, 2.0, 0.0]), 3), torch.tensor([1, 2, 0]))


def _brute_force_joint_mi(probs: torch.Tensor, batch: list[int]) -> float:
    """Joint MI of a batch under the ensemble mixture by explicit enumeration."""
    m, _, c = probs.shape
    p = probs.double()
    joint_entropy = 0.0
    for config in itertools.product(range(c), repeat=len(batch)):
        per_member = torch.ones(m, dtype=torch.float64)
        for i, label in zip(batch, config, strict=True):
            per_member = per_member * p[:, i, label]
        q = float(per_member.mean())
        if q > 0:
            joint_entropy -= q * math.log(q)
    cond = float(acq.expected_entropy(p)[batch].sum())
    return joint_entropy - cond


def test_batchbald_exact_matches_brute_force_greedy() -> None:
    probs = _probs(7, m=4, n=12, c=3)
    picked = acq.batchbald(probs, 3).tolist()
    chosen: list[int] = []
    for _ in range(3):
        scores = {
            j: _brute_force_joint_mi(probs, [*chosen, j]) for j in range(12) if j not in chosen
        }
        chosen.append(max(scores, key=lambda j: (scores[j], -j)))
    assert picked == chosen


def test_batchbald_does_not_spend_a_batch_on_duplicates() -> None:
    base = _probs(11, m=5, n=6, c=3, temperature=0.5)
    mi = acq.mutual_information(base)
    top = int(mi.argmax())
    # Pool: 5 copies of the most informative sample, then the other samples.
    probs = torch.cat([base[:, [top] * 5], base], dim=1)
    topk = get_strategy("bald").select(probs, 3).tolist()
    assert all(i < 6 for i in topk)  # naive top-k takes copies of one sample
    picked = get_strategy("batchbald").select(probs, 3).tolist()
    copies = [i for i in picked if i < 5 or i == 5 + top]
    assert len(copies) == 1


def test_batchbald_sampled_agrees_with_exact_on_the_first_picks() -> None:
    probs = _probs(5, m=5, n=30, c=4)
    exact = acq.batchbald(probs, 4)
    # max_configs=16 forces sampling from the third pick on (4^2 * 4 > 16).
    sampled = acq.batchbald(
        probs, 4, max_configs=16, num_samples=4000, generator=torch.Generator().manual_seed(0)
    )
    assert exact[:2].tolist() == sampled[:2].tolist()
    assert len(set(sampled.tolist())) == 4


def test_power_bald_prefers_informative_samples() -> None:
    mi_high = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]).repeat(1, 10, 1)
    mi_low = torch.full((2, 90, 2), 0.5)
    probs = torch.cat([mi_high, mi_low], dim=1)
    picked = acq.power_bald(probs, 10, generator=torch.Generator().manual_seed(0))
    assert sorted(picked.tolist()) == list(range(10))
    spread = acq.power_bald(
        _probs(2, n=200), 20, beta=0.0, generator=torch.Generator().manual_seed(1)
    )
    assert len(set(spread.tolist())) == 20
