"""The "embedding" learner through the learner seam: M heads on frozen per-sample embeddings.

Adapts activelearn.core.embedding_learner (heads + label spreading over the pool's kNN graph,
core.knn_graph) to activelearn.core.learner.Learner: it consumes embeddings (N, D), builds the
pool's graph from the PoolView it is given (once per embedding set: a one-entry cache keyed by
the pool's bytes, so simulate's rounds and repeats build it once), and returns the pool's
probabilities its graph gives anyway (each pool node votes with its own spread label).

Defaults are the benchmark's measured winners (benchmarks/label_efficiency.md, "Embedding
learner, features and graph"): kNN graph k = 5, every member keeps all labels, members seeded
apart, temperature 0.5. `LearnerSpec.options` may override any EmbeddingLearnerConfig field and
"graph_k". `LearnerSpec.epochs` and `batch_size` do not apply (full-batch Adam, fixed steps).
"""

from __future__ import annotations

import threading
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from activelearn.core.checkpoint import read_checkpoint, write_checkpoint
from activelearn.core.embedding_learner import (
    EmbeddingEnsemble,
    EmbeddingLearner,
    EmbeddingLearnerConfig,
)
from activelearn.core.knn_graph import PoolGraph, build_pool_graph
from activelearn.core.learner import (
    FitCallback,
    FitHistory,
    FitProgress,
    LearnerFit,
    LearnerInputs,
    LearnerSpec,
    PoolView,
)
from activelearn.core.row_set import row_set

__all__ = ["EmbeddingFitLearner", "EmbeddingModel"]

ARCHITECTURE = "embedding-heads"
DEFAULT_GRAPH_K = 5
DEFAULTS = {"label_keep": 1.0}  # measured: keeping every label beat 0.8 (0.933 vs 0.858 @ 60)


class EmbeddingModel:
    """A fitted embedding ensemble as a FittedModel: predict_proba((N, D)) -> (M, N, K)."""

    def __init__(self, ensemble: EmbeddingEnsemble) -> None:
        self.ensemble = ensemble
        self.members = ensemble.config.members
        self.device = torch.device("cpu")  # heads are tiny: the CPU is faster than a transfer

    def predict_proba(self, x: Tensor | np.ndarray) -> Tensor:
        features = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        if features.ndim != 2:
            raise ValueError(f"the embedding learner takes (N, D) embeddings; got {features.shape}")
        return self.ensemble.predict_proba(features)

    def save(self, path: str | Path) -> None:
        """A checkpoint folder: the heads (and the pool's anchors and spread targets) in
        model.safetensors, the config in config.json naming learner "embedding"."""
        meta = {"learner": EmbeddingFitLearner.name, "config": self.ensemble.config.to_json()}
        write_checkpoint(path, self.ensemble.params, meta, architecture=ARCHITECTURE)


class EmbeddingFitLearner:
    """The Learner for `learner = "embedding"`; see the module docstring."""

    name = "embedding"
    inputs: LearnerInputs = "embeddings"

    def __init__(self, spec: LearnerSpec) -> None:
        self.spec = spec
        known = {f.name for f in fields(EmbeddingLearnerConfig)}
        options = {**DEFAULTS, **{k: v for k, v in spec.options.items() if k in known}}
        self.config = EmbeddingLearnerConfig(**{**options, "members": spec.members})
        self.graph_k = int(spec.options.get("graph_k", DEFAULT_GRAPH_K))

    def planned_work(self, n_train: int) -> float:
        # A head step over one row costs about 1/100 of a CNN image pass; there are `steps`.
        return self.config.steps * (n_train + self.config.pool_sample) / 100.0

    def fit(
        self,
        x: Tensor | np.ndarray,
        y: Tensor,
        *,
        progress: FitCallback | None = None,
        pool: PoolView | None = None,
    ) -> LearnerFit:
        """x (L, D) labeled embeddings, y (L,); with `pool` the semi-supervised term is used
        and LearnerFit.pool_probs holds the pool's (M, N_pool, K) probabilities."""
        started = time.perf_counter()
        features = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
        if features.ndim != 2:
            raise ValueError(f"the embedding learner takes (L, D) embeddings; got {features.shape}")
        steps = self.config.steps
        if progress is not None:  # a cancel raised here stops the round before any work
            progress(FitProgress(1, 1, 0, steps, (0.0,) * self.config.members))
        graph, index, n_pool = None, None, 0
        if pool is not None:
            graph, index, n_pool = self._graph(features, pool)
        learner = EmbeddingLearner(self.config)
        ensemble = learner.fit(
            features,
            labels,
            n_classes=self.spec.n_classes,
            seed=self.spec.seed,
            pool=graph,
            pool_index=index,
        )
        losses = _labeled_losses(ensemble, features, labels)  # (M,)
        if progress is not None:
            progress(FitProgress(1, 1, steps, steps, tuple(losses)))
        pool_probs = None
        if graph is not None:
            pool_probs = ensemble.predict_pool(graph)[:, :n_pool].contiguous()  # (M, N, K)
        history = FitHistory(
            train_loss=[[loss] for loss in losses],
            val_loss=None,
            epochs_run=1,
            seconds=time.perf_counter() - started,
            device="cpu",
        )
        return LearnerFit(model=EmbeddingModel(ensemble), history=history, pool_probs=pool_probs)

    def _graph(self, features: Tensor, pool: PoolView) -> tuple[PoolGraph | None, Tensor, int]:
        """(graph of the pool [+ the training rows when they are not in it], (L,) node of each
        training row, N_pool); no graph for a pool of fewer than two nodes."""
        nodes = torch.as_tensor(np.asarray(pool.inputs), dtype=torch.float32)
        n_pool = int(nodes.shape[0])
        if pool.train_index is None:
            nodes = torch.cat([nodes, features])
            index = torch.arange(n_pool, n_pool + features.shape[0])
        else:
            index = torch.as_tensor(np.asarray(pool.train_index), dtype=torch.long)
        if nodes.shape[0] < 2:
            return None, index, n_pool
        return pool_graph(nodes, self.graph_k), index, n_pool

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> EmbeddingModel:
        """The model saved by EmbeddingModel.save (always on the CPU; `device` is not used)."""
        tensors, meta = read_checkpoint(path, architecture=ARCHITECTURE)
        config = EmbeddingLearnerConfig.from_json(meta["config"])
        return EmbeddingModel(EmbeddingEnsemble(config, tensors))


def _labeled_losses(ensemble: EmbeddingEnsemble, x: Tensor, y: Tensor) -> list[float]:
    """Each member's mean cross-entropy on the labeled rows (its training curve's one point)."""
    with torch.no_grad():
        probs = ensemble.predict_proba(x)  # (M, L, K)
        picked = probs.gather(2, y.view(1, -1, 1).expand(probs.shape[0], -1, 1)).squeeze(2)
        return [float(v) for v in -picked.clamp_min(1e-12).log().mean(1)]


# One graph per embedding set, whatever the order of its rows: a round's pool is the same set
# round after round (simulate's rounds and repeats; a worker's consecutive rounds, whose layout,
# open rows first, changes as labels move), and building it dominates a round at 100k images.
# The cache holds the graph over the rows in their canonical order (core.row_set); a pool in
# another order gets it with its nodes renumbered: a sort, not a kNN search. Keyed by the set
# and k; one entry, so memory stays one graph.
_GRAPH_CACHE: dict[tuple[str, int], PoolGraph] = {}
_GRAPH_LOCK = threading.Lock()


def pool_graph(nodes: Tensor, k: int = DEFAULT_GRAPH_K) -> PoolGraph:
    """The kNN graph of these rows (any order), built once per embedding set and k."""
    unit = F.normalize(nodes, dim=1)
    rows = row_set(unit)
    key = (rows.key, k)
    with _GRAPH_LOCK:
        graph = _GRAPH_CACHE.get(key)
    if graph is None:
        graph = build_pool_graph(rows.rows, k=k)
        with _GRAPH_LOCK:
            _GRAPH_CACHE.clear()
            _GRAPH_CACHE[key] = graph
    return _renumbered(graph, rows.order)


def _renumbered(graph: PoolGraph, order: Tensor) -> PoolGraph:
    """A graph over rows order[0], order[1], ... -> the same graph over the rows in their own
    order (node c becomes row order[c])."""
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    coo = graph.operator.to_sparse_coo().coalesce()
    operator = torch.sparse_coo_tensor(order[coo.indices()], coo.values(), size=coo.shape)
    return PoolGraph(
        embeddings=graph.embeddings[inverse],
        neighbors=order[graph.neighbors[inverse]],
        similarities=graph.similarities[inverse],
        operator=operator.coalesce().to_sparse_csr(),
    )
