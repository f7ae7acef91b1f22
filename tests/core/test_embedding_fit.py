"""The "embedding" learner through the learner seam: two clusters, shapes, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from activelearn.core import learners
from activelearn.core.embedding_fit import EmbeddingFitLearner, EmbeddingModel
from activelearn.core.learner import LearnerSpec, PoolView

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_clusters(per_cluster: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """(2n, 3) points near the unit vectors e0 (class 0, rows 0..n-1) and e1 (class 1)."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.arange(2).repeat_interleave(per_cluster)
    x = centers[y] + 0.05 * torch.randn(2 * per_cluster, 3, generator=gen)
    return x, y


def spec(members: int = 3, seed: int = 0) -> LearnerSpec:
    return LearnerSpec(n_classes=2, in_channels=1, image_size=8, members=members, seed=seed)


def test_one_label_per_cluster_labels_every_pool_point() -> None:
    x, y = two_clusters()
    train = torch.tensor([0, 20])  # one labeled point in each cluster
    learner = learners.make_learner("embedding", spec())
    assert learner.inputs == "embeddings" and learners.learner_inputs("cnn") == "pixels"
    fitted = learner.fit(x[train], y[train], pool=PoolView(inputs=x, train_index=train))
    assert fitted.pool_probs is not None and fitted.pool_probs.shape == (3, 40, 2)  # (M, N, K)
    assert torch.equal(fitted.pool_probs.mean(0).argmax(1), y)
    # Points never seen (not in the pool) are voted on by their pool neighbours.
    fresh = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.95, 0.05]])
    probs = fitted.model.predict_proba(fresh)
    assert probs.shape == (3, 2, 2) and probs.mean(0).argmax(1).tolist() == [0, 1]
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 2))
    assert len(fitted.history.train_loss) == 3 and fitted.history.train_loss[0][0] < 0.7


def test_training_rows_outside_the_pool_join_its_graph() -> None:
    # simulate's layout: the pool holds the open rows only; the labeled rows are added as nodes
    # and the pool's probabilities cover the pool's rows only.
    x, y = two_clusters()
    train = torch.tensor([0, 20])
    open_rows = torch.tensor([i for i in range(40) if i not in (0, 20)])
    fitted = EmbeddingFitLearner(spec()).fit(
        x[train], y[train], pool=PoolView(inputs=x[open_rows], train_index=None)
    )
    assert fitted.pool_probs is not None and fitted.pool_probs.shape == (3, 38, 2)
    assert torch.equal(fitted.pool_probs.mean(0).argmax(1), y[open_rows])


def test_without_a_pool_the_heads_alone_still_separate_the_clusters() -> None:
    x, y = two_clusters()
    train = torch.tensor([0, 1, 20, 21])
    fitted = EmbeddingFitLearner(spec(members=2)).fit(x[train], y[train])
    assert fitted.pool_probs is None
    assert torch.equal(fitted.model.predict_proba(x).mean(0).argmax(1), y)


def test_seeds_repeat_exactly_and_set_members_apart() -> None:
    x, y = two_clusters()
    train = torch.tensor([0, 5, 20, 25])
    view = PoolView(inputs=x, train_index=train)
    a = EmbeddingFitLearner(spec(seed=4)).fit(x[train], y[train], pool=view)
    b = EmbeddingFitLearner(spec(seed=4)).fit(x[train], y[train], pool=view)
    assert torch.equal(a.pool_probs, b.pool_probs)
    assert not torch.equal(a.pool_probs[0], a.pool_probs[1])  # members differ


def test_a_saved_model_loads_back_through_the_registry(tmp_path: Path) -> None:
    x, y = two_clusters()
    train = torch.tensor([0, 20])
    fitted = EmbeddingFitLearner(spec()).fit(
        x[train], y[train], pool=PoolView(inputs=x, train_index=train)
    )
    fitted.model.save(tmp_path / "round")
    assert json.loads((tmp_path / "round" / "config.json").read_text())["learner"] == "embedding"
    loaded = learners.load_fitted(tmp_path / "round")
    assert isinstance(loaded, EmbeddingModel) and loaded.members == 3
    original = fitted.model.ensemble.params
    assert set(loaded.ensemble.params) == set(original) and "anchors" in original
    for name, tensor in original.items():
        assert torch.equal(loaded.ensemble.params[name], tensor), name
    assert torch.equal(loaded.predict_proba(x), fitted.model.predict_proba(x))


def test_a_cancel_from_progress_stops_the_fit() -> None:
    x, y = two_clusters()

    def cancel(_update: object) -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        EmbeddingFitLearner(spec()).fit(x[:2], y[:2], progress=cancel)


def test_the_pool_graph_is_built_once_whatever_the_rows_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker's layout (open rows first, labeled last) changes as labels move: the same
    # embedding set in another order reuses the graph, and the pool's predictions follow rows.
    from activelearn.core import embedding_fit

    built: list[int] = []
    real = embedding_fit.build_pool_graph

    def counting(nodes: torch.Tensor, *, k: int) -> object:  # the real builder, counted
        built.append(len(nodes))
        return real(nodes, k=k)

    monkeypatch.setattr(embedding_fit, "build_pool_graph", counting)
    x, y = two_clusters()
    x = x + 0.001 * torch.arange(40).unsqueeze(1)  # rows unlike any earlier test's: a miss
    train = torch.tensor([0, 20])
    first = EmbeddingFitLearner(spec()).fit(
        x[train], y[train], pool=PoolView(inputs=x, train_index=train)
    )
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    position = torch.empty_like(perm)
    position[perm] = torch.arange(40)  # where each original row went
    second = EmbeddingFitLearner(spec()).fit(
        x[train], y[train], pool=PoolView(inputs=x[perm], train_index=position[train])
    )
    assert built == [40]  # one kNN search for both fits
    torch.testing.assert_close(second.pool_probs, first.pool_probs[:, perm])
