"""The pure round pipeline: one scoring path, chunked prediction, and the learner seam."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from activelearn.core import acquisition as acq
from activelearn.core import learners
from activelearn.core.ensemble import Ensemble, EnsembleConfig
from activelearn.core.learner import FitHistory, LearnerFit, LearnerSpec
from activelearn.services.pipeline import (
    RoundFailed,
    predict_in_chunks,
    score_pool,
    train_and_score,
)
from activelearn.services.settings import ProjectSettings


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    config = EnsembleConfig(members=3, device="cpu", widths=(8, 16), hidden=32, seed=1)
    return Ensemble(config, in_channels=1, n_classes=5, image_size=12)


def _pool(n: int = 300) -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 12, 12, generator=generator) * 255).to(torch.uint8)


def test_scores_match_the_acquisition_functions(ensemble: Ensemble) -> None:
    # The one scoring path: every stored field is the acquisition function of the same probs.
    probs = ensemble.predict_proba(_pool())  # (M, N, C)
    table = score_pool(probs, strategy="bald", acquisition_batch=10)
    close = dict(atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        table.mutual_information, acq.mutual_information(probs).double(), **close
    )
    torch.testing.assert_close(
        table.predictive_entropy, acq.predictive_entropy(probs).double(), **close
    )
    torch.testing.assert_close(
        table.expected_entropy, acq.expected_entropy(probs).double(), **close
    )
    torch.testing.assert_close(table.variance, acq.predictive_variance(probs).double(), **close)
    torch.testing.assert_close(table.margin, acq.margin(probs).double(), **close)
    torch.testing.assert_close(table.confidence, probs.double().mean(0).max(-1).values, **close)
    assert torch.equal(table.predicted_class, probs.double().mean(0).argmax(-1))
    assert torch.equal(table.member_predictions, probs.argmax(-1))
    # bald ranks by mutual information, highest first.
    order = torch.argsort(table.rank)
    assert torch.equal(order, torch.sort(table.priority, descending=True, stable=True).indices)
    assert torch.equal(table.priority, acq.mutual_information(probs).double())


def test_prediction_in_chunks_matches_one_pass_and_reports_progress(ensemble: Ensemble) -> None:
    pool = _pool()
    calls: list[tuple[int, int]] = []
    chunked = predict_in_chunks(
        ensemble, pool.numpy(), chunk=128, on_chunk=lambda d, t: calls.append((d, t))
    )
    assert calls == [(0, 300), (128, 300), (256, 300)]
    torch.testing.assert_close(chunked, ensemble.predict_proba(pool))
    with pytest.raises(RuntimeError, match="stop"):

        def stop(done: int, _total: int) -> None:
            if done:
                raise RuntimeError("stop")

        predict_in_chunks(ensemble, pool, chunk=100, on_chunk=stop)


class PriorModel:
    """A fitted 'learner' of two members that ignores the pixels: member 0 predicts the class
    frequencies of its training labels, member 1 the uniform distribution."""

    def __init__(self, frequencies: Tensor) -> None:
        self.frequencies = frequencies  # (C,)
        self.members = 2
        self.device = torch.device("cpu")

    def predict_proba(self, x: Tensor | np.ndarray) -> Tensor:
        n, c = len(x), len(self.frequencies)
        return torch.stack(
            [self.frequencies.expand(n, c), torch.full((n, c), 1.0 / c)]
        ).float()  # (2, N, C)

    def save(self, path: str | Path) -> None:
        raise NotImplementedError


class PriorLearner:
    name = "prior"
    inputs = "pixels"

    def __init__(self, spec: LearnerSpec) -> None:
        self.spec = spec
        self.fitted_on: int | None = None

    def planned_work(self, n_train: int) -> float:
        return float(n_train)

    def fit(self, x, y, *, progress=None, pool=None) -> LearnerFit:
        counts = torch.bincount(torch.as_tensor(y), minlength=self.spec.n_classes).double()
        history = FitHistory([[0.0], [0.0]], None, epochs_run=1, seconds=0.0, device="cpu")
        return LearnerFit(model=PriorModel(counts / counts.sum()), history=history)


def test_the_pipeline_runs_any_registered_learner(monkeypatch: pytest.MonkeyPatch) -> None:
    # A second learner is one class plus one registry entry; the pipeline never asks which.
    monkeypatch.setitem(learners.LEARNERS, "prior", lambda: PriorLearner)
    pixels = np.zeros((6, 1, 8, 8), dtype=np.uint8)
    labels = np.array([0, 0, 0, 1, 1, 2])  # frequencies 1/2, 1/3, 1/6
    settings = ProjectSettings(learner="prior", strategy="bald", members=2, image_size=8)
    result = train_and_score(
        train_pixels=pixels,
        train_labels=labels,
        pool_pixels=np.zeros((4, 1, 8, 8), dtype=np.uint8),
        eval_pixels=pixels,
        eval_labels=labels,
        n_classes=3,
        settings=settings,
        device="cpu",
    )
    assert isinstance(result.model, PriorModel) and result.device == "cpu"
    # Ensemble accuracy on the training images: the mean prediction always says class 0.
    assert result.metrics[0].member == -1 and result.metrics[0].accuracy == pytest.approx(0.5)
    assert [m.member for m in result.metrics] == [-1, 0, 1]
    # Hand-computed mutual information: H(mean) - mean(H(p_m)), p_0 = (1/2, 1/3, 1/6),
    # p_1 = uniform.
    p0 = torch.tensor([1 / 2, 1 / 3, 1 / 6], dtype=torch.float64)
    p1 = torch.full((3,), 1 / 3, dtype=torch.float64)

    def h(p: Tensor) -> float:
        return float(-(p * p.log()).sum())

    expected = h((p0 + p1) / 2) - (h(p0) + h(p1)) / 2
    assert result.pool is not None
    torch.testing.assert_close(
        result.pool.mutual_information, torch.full((4,), expected, dtype=torch.float64)
    )
    assert sorted(result.pool.rank.tolist()) == [1, 2, 3, 4]


def test_an_unknown_learner_is_refused_by_the_settings() -> None:
    from activelearn.errors import InvalidSetting

    with pytest.raises(InvalidSetting, match="unknown learner 'nope'; known: cnn"):
        ProjectSettings(learner="nope").validate()


def test_a_saved_cnn_loads_back_through_the_registry(ensemble: Ensemble, tmp_path: Path) -> None:
    ensemble.save(tmp_path / "round")
    loaded = learners.load_fitted(tmp_path / "round", device="cpu")
    assert isinstance(loaded, Ensemble)
    for name, tensor in ensemble.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    pool = _pool(20)
    assert torch.equal(loaded.predict_proba(pool), ensemble.predict_proba(pool))


def _clusters() -> tuple[Tensor, Tensor]:
    """40 embeddings near e0 (class 0, rows 0-19) and e1 (class 1, rows 20-39)."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(2).repeat_interleave(20)
    x = torch.eye(3)[y] + 0.05 * torch.randn(40, 3, generator=gen)
    return x, y


def test_the_embedding_learner_and_auto_run_on_features_in_the_runners_layout() -> None:
    # The round runner's layout: open rows first, the labeled rows last (not rankable).
    x, y = _clusters()
    labeled = torch.tensor([0, 20])
    open_rows = torch.tensor([i for i in range(40) if i not in (0, 20)])
    order = torch.cat([open_rows, labeled])
    rankable = torch.zeros(40, dtype=torch.bool)
    rankable[:38] = True
    pixels = np.zeros((40, 1, 8, 8), dtype=np.uint8)  # not read by this learner
    settings = ProjectSettings(learner="embedding", strategy="auto", members=3, image_size=8)
    result = train_and_score(
        train_pixels=pixels[:2],
        train_labels=y[labeled].numpy(),
        pool_pixels=pixels,
        eval_pixels=pixels[:10],
        eval_labels=y[:10].numpy(),
        n_classes=2,
        settings=settings,
        pool_rankable=rankable,
        device="cpu",
        train_features=x[labeled],
        pool_features=x[order],
        eval_features=x[:10],
        train_pool_index=torch.arange(38, 40),
    )
    assert result.pool is not None and result.metrics[0].accuracy == 1.0
    assert torch.equal(result.pool.predicted_class, y[order])
    assert result.pool.member_predictions.shape == (3, 40)
    assert (result.pool.rank[38:] == 0).all() and sorted(result.pool.rank[:38].tolist()) == list(
        range(1, 39)
    )
    # 2 labels < 3 per class: auto picks typical samples and says why, for open rows only;
    # they are ranked 1..k (argsort: the two unranked labeled rows, rank 0, come first).
    k = settings.acquisition_batch
    assert len(result.pool.reasons) == k and all(i < 38 for i in result.pool.reasons)
    assert all(text.startswith("most typical of") for text in result.pool.reasons.values())
    assert set(result.pool.reasons) == set(torch.argsort(result.pool.rank)[2 : 2 + k].tolist())


def test_a_round_that_needs_embeddings_without_them_fails_in_one_line() -> None:
    pixels = np.zeros((4, 1, 8, 8), dtype=np.uint8)
    common = dict(
        train_pixels=pixels[:2],
        train_labels=np.array([0, 1]),
        pool_pixels=pixels,
        eval_pixels=None,
        eval_labels=None,
        n_classes=2,
        device="cpu",
    )
    for settings in (
        ProjectSettings(learner="embedding", strategy="bald", image_size=8),
        ProjectSettings(learner="cnn", strategy="typiclust", image_size=8, epochs=1),
    ):
        with pytest.raises(RoundFailed, match="the representation stage has not finished yet"):
            train_and_score(settings=settings, **common)
