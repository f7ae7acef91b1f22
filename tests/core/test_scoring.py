"""Pool scoring: matches the acquisition functions, chunk sources, progress."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activelearn.core import acquisition as acq
from activelearn.core.ensemble import Ensemble, EnsembleConfig
from activelearn.core.scoring import PoolScores, score_pool


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    config = EnsembleConfig(members=3, device="cpu", widths=(8, 16), hidden=32, seed=1)
    return Ensemble(config, in_channels=1, n_classes=5, image_size=12)


def _pool(n: int = 300) -> torch.Tensor:
    return (torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(0)) * 255).to(
        torch.uint8
    )


def test_scores_match_acquisition_functions(ensemble: Ensemble) -> None:
    pool = _pool()
    scores = score_pool(ensemble, pool, chunk_size=64)
    probs = ensemble.predict_proba(pool)
    assert isinstance(scores, PoolScores) and len(scores) == 300
    close = dict(atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(scores.mutual_information, acq.mutual_information(probs), **close)
    torch.testing.assert_close(scores.predictive_entropy, acq.predictive_entropy(probs), **close)
    torch.testing.assert_close(scores.expected_entropy, acq.expected_entropy(probs), **close)
    torch.testing.assert_close(scores.variance, acq.predictive_variance(probs), **close)
    torch.testing.assert_close(scores.margin, acq.margin(probs), **close)
    torch.testing.assert_close(scores.confidence, probs.mean(0).max(-1).values, **close)
    assert torch.equal(scores.predicted_class, probs.mean(0).argmax(-1))
    assert scores.predicted_class.dtype == torch.long
    assert (scores.mutual_information >= 0).all()


def test_callable_and_numpy_sources_and_progress(ensemble: Ensemble) -> None:
    pool = _pool()
    reference = score_pool(ensemble, pool)
    calls: list[tuple[int, int]] = []
    fetched: list[tuple[int, int]] = []

    def source(start: int, stop: int) -> np.ndarray:
        fetched.append((start, stop))
        return pool[start:stop].numpy()

    scores = score_pool(
        ensemble, source, n=300, chunk_size=128, progress=lambda d, t: calls.append((d, t))
    )
    assert fetched == [(0, 128), (128, 256), (256, 300)]
    assert calls == [(128, 300), (256, 300), (300, 300)]
    torch.testing.assert_close(scores.mutual_information, reference.mutual_information)
    from_numpy = score_pool(ensemble, pool.numpy(), chunk_size=100)
    torch.testing.assert_close(from_numpy.confidence, reference.confidence)


def test_bad_sources(ensemble: Ensemble) -> None:
    with pytest.raises(ValueError, match=r"n .*required"):
        score_pool(ensemble, lambda a, b: _pool()[a:b])
    with pytest.raises(ValueError, match="expected"):
        score_pool(ensemble, lambda a, b: _pool(5), n=20, chunk_size=10)
