"""The embedding learner: accuracy on real digits, seeds, member disagreement, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from activelearn.core.acquisition import mutual_information
from activelearn.core.embedding_learner import (
    EmbeddingEnsemble,
    EmbeddingLearner,
    EmbeddingLearnerConfig,
)
from activelearn.core.knn_graph import build_pool_graph

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn's 8x8 digits as (pixel) embeddings: 1,297 pool rows and 500 test rows."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x = torch.nn.functional.normalize(torch.tensor(x[order], dtype=torch.float32), dim=1)
    y = torch.tensor(y[order])
    return x[500:], y[500:], x[:500], y[:500]


def _labeled(y: torch.Tensor, per_class: int) -> torch.Tensor:
    return torch.cat([(y == c).nonzero().flatten()[:per_class] for c in range(10)])


def test_fits_real_digits_well_above_chance(digits) -> None:
    pool, pool_y, test, test_y = digits
    index = _labeled(pool_y, 3)  # 30 labels
    graph = build_pool_graph(pool)
    learner = EmbeddingLearner(EmbeddingLearnerConfig(members=3))
    model = learner.fit(
        pool[index], pool_y[index], n_classes=10, seed=0, pool=graph, pool_index=index
    )
    probs = model.predict_proba(test)
    assert probs.shape == (3, 500, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 500))
    semi = (probs.mean(0).argmax(1) == test_y).float().mean().item()
    heads_only = EmbeddingLearner(EmbeddingLearnerConfig(members=3, propagate=False)).fit(
        pool[index], pool_y[index], n_classes=10, seed=0
    )
    supervised = (heads_only.predict_proba(test).mean(0).argmax(1) == test_y).float().mean().item()
    assert supervised > 0.6 and semi > 0.85, (supervised, semi)  # chance: 0.1
    assert model.predict_pool(graph).shape == (3, len(pool), 10)


def test_seeded_fits_repeat_exactly_and_members_differ(digits) -> None:
    pool, pool_y, test, _ = digits
    index = _labeled(pool_y, 2)
    graph = build_pool_graph(pool)
    learner = EmbeddingLearner(EmbeddingLearnerConfig(members=4))
    a = learner.fit(pool[index], pool_y[index], n_classes=10, seed=5, pool=graph, pool_index=index)
    b = learner.fit(pool[index], pool_y[index], n_classes=10, seed=5, pool=graph, pool_index=index)
    c = learner.fit(pool[index], pool_y[index], n_classes=10, seed=6, pool=graph, pool_index=index)
    torch.testing.assert_close(a.predict_proba(test), b.predict_proba(test), rtol=0, atol=0)
    assert not torch.equal(a.predict_proba(test), c.predict_proba(test))
    mi = mutual_information(a.predict_proba(test))
    assert mi.max() > 0.05, "members seeded apart must disagree somewhere"


def test_save_load_keeps_every_tensor(digits, tmp_path: Path) -> None:
    pool, pool_y, test, _ = digits
    index = _labeled(pool_y, 2)
    graph = build_pool_graph(pool)
    config = EmbeddingLearnerConfig(members=2, hidden=16)
    model = EmbeddingLearner(config).fit(
        pool[index], pool_y[index], n_classes=10, seed=1, pool=graph, pool_index=index
    )
    model.save(tmp_path / "heads.safetensors")
    loaded = EmbeddingEnsemble.load(tmp_path / "heads.safetensors")
    assert loaded.config == config and set(loaded.params) == set(model.params)
    for name, tensor in model.params.items():
        torch.testing.assert_close(loaded.params[name], tensor, rtol=0, atol=0)
    torch.testing.assert_close(
        loaded.predict_proba(test), model.predict_proba(test), rtol=0, atol=0
    )


def test_bad_inputs_are_refused() -> None:
    learner = EmbeddingLearner()
    with pytest.raises(ValueError, match="labels must lie"):
        learner.fit(torch.rand(3, 4), torch.tensor([0, 1, 5]), n_classes=3, seed=0)
    with pytest.raises(ValueError, match="need"):
        learner.fit(torch.rand(3, 4), torch.tensor([0, 1]), n_classes=3, seed=0)
    two = EmbeddingLearner(EmbeddingLearnerConfig(members=2))
    with pytest.raises(ValueError, match="label_masks"):  # one member with no label
        two.fit(
            torch.rand(3, 4),
            torch.tensor([0, 1, 1]),
            n_classes=2,
            seed=0,
            label_masks=torch.tensor([[True, True, False], [False, False, False]]),
        )


def test_a_member_learns_only_the_labels_its_mask_keeps() -> None:
    # Same points, opposite labels for the two members' halves: each member follows its own.
    x = torch.eye(4)
    y = torch.tensor([0, 1, 1, 0])
    masks = torch.tensor([[True, True, False, False], [False, False, True, True]])
    learner = EmbeddingLearner(EmbeddingLearnerConfig(members=2, dropout=0.0, steps=200))
    probs = learner.fit(x, y, n_classes=2, seed=0, label_masks=masks).predict_proba(x)
    assert probs[0, 0].argmax() == 0 and probs[0, 1].argmax() == 1  # member 0 saw rows 0, 1
    assert probs[1, 2].argmax() == 1 and probs[1, 3].argmax() == 0  # member 1 saw rows 2, 3
    # a row a member never saw is its own axis here: nothing taught that member about it
    assert probs[0, 2:].max() < 0.7 and probs[1, :2].max() < 0.7


def test_sharpen_matches_hand_computation_and_leaves_t1_unchanged() -> None:
    from activelearn.core.embedding_learner import sharpen

    p = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    # T = 0.5: squares renormalised: [0.04, 0.64] / 0.68
    expected = torch.tensor([[0.04 / 0.68, 0.64 / 0.68], [0.5, 0.5]])
    torch.testing.assert_close(sharpen(p, 0.5), expected)
    assert sharpen(p, 1.0) is p
    with pytest.raises(ValueError):
        EmbeddingLearnerConfig(temperature=0.0)
