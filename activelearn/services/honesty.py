"""What a round says beyond its ranking: an OOD score per open pool sample and an out-of-sample
judgement of every label (activelearn.core.ood and core.label_issues over the round's data).

Features: the project's stored embeddings when the round has them, else a PCA of the pool's
own pixels (fitted on the pool only, never the test split). Labels are judged by K-fold heads
that never trained on them, spreading over the pool's kNN graph (benchmarks/honesty.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from activelearn.core.embedding_fit import pool_graph
from activelearn.core.label_issues import find_label_issues
from activelearn.core.ood import ood_scores
from activelearn.core.representation.features import PixelPCA

# The exact kNN graph costs O(N^2); past this many pool rows the labels are judged by the K-fold
# heads alone (weaker: benchmarks/honesty.md), which costs O(labels) instead.
GRAPH_MAX_ROWS = 20_000
FOLDS = 5
log = logging.getLogger("activelearn.worker")


@dataclass(frozen=True)
class RoundHonesty:
    """Per pool row of a round (open rows first, then labeled rows), all (N,):
    ood_score float64 in (0, 1] for open rows, NaN for labeled ones;
    label_issue float64 in [0, 1] for labeled rows (NaN where not judged or open);
    suggested_class int64, the out-of-sample argmax for judged labeled rows, else -1."""

    ood_score: Tensor
    label_issue: Tensor
    suggested_class: Tensor


def pool_features(pixels: Tensor | np.ndarray, *, seed: int = 0) -> Tensor:
    """(N, C, S, S) uint8 pool pixels -> (N, d) PCA coordinates fitted on these rows."""
    return PixelPCA.fit(pixels, seed=seed).transform(pixels)


def judge_round(
    *,
    features: Tensor | np.ndarray,
    mean_probs: Tensor,
    n_open: int,
    labels: Tensor | np.ndarray,
    n_classes: int,
    seed: int = 0,
) -> RoundHonesty:
    """features (N, D) and the ensemble's mean prediction (N, C) of a round's pool rows, of
    which the first n_open are open and the rest labeled with `labels` (N - n_open,)."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    n = x.shape[0]
    if mean_probs.shape[0] != n or y.shape != (n - n_open,):
        raise ValueError(
            f"{n} feature rows need {n} predictions and {n - n_open} labels; "
            f"got {tuple(mean_probs.shape)} and {tuple(y.shape)}"
        )
    ood = torch.full((n,), float("nan"), dtype=torch.float64)
    issue = torch.full((n,), float("nan"), dtype=torch.float64)
    suggested = torch.full((n,), -1, dtype=torch.int64)
    labeled = torch.arange(n_open, n)
    if n_open and len(labeled):
        scores = ood_scores(
            x[:n_open], x[labeled], probs=mean_probs[:n_open].unsqueeze(0).to(torch.float32)
        )
        ood[:n_open] = scores.score
    if len(labeled) >= 2 * FOLDS and len(torch.unique(y)) >= 2:
        # The embedding learner's graph of these same rows when it has just built it (cached).
        graph = pool_graph(x) if n <= GRAPH_MAX_ROWS else None
        issues = find_label_issues(
            x[labeled],
            y,
            n_classes=n_classes,
            folds=FOLDS,
            seed=seed,
            pool=graph,
            pool_index=labeled if graph is not None else None,
        )
        issue[labeled] = issues.score
        suggested[labeled] = issues.suggested_label
    return RoundHonesty(ood_score=ood, label_issue=issue, suggested_class=suggested)


def round_honesty(
    *,
    pool_pixels: Tensor | np.ndarray,
    embeddings: Tensor | None,
    mean_probs: Tensor,
    n_open: int,
    labels: Tensor | np.ndarray,
    n_classes: int,
    seed: int = 0,
) -> RoundHonesty | None:
    """judge_round on the round's embeddings, else on a pixel PCA of its pool; None (logged)
    when it cannot be computed: the round's ranking does not depend on it."""
    try:
        features = embeddings if embeddings is not None else pool_features(pool_pixels, seed=seed)
        return judge_round(
            features=features,
            mean_probs=mean_probs,
            n_open=n_open,
            labels=labels,
            n_classes=n_classes,
            seed=seed,
        )
    except Exception:
        log.exception("could not compute the OOD and label-issue scores of this round")
        return None


def stored_columns(honesty: RoundHonesty | None, n: int) -> dict[str, list[float | int | None]]:
    """The sample_scores columns of N rows (None = not computed)."""
    if honesty is None:
        return {"ood_score": [None] * n, "label_issue": [None] * n, "suggested_class": [None] * n}

    def floats(values: Tensor) -> list[float | None]:
        return [None if np.isnan(v) else round(float(v), 6) for v in values.tolist()]

    return {
        "ood_score": floats(honesty.ood_score),
        "label_issue": floats(honesty.label_issue),
        "suggested_class": [None if c < 0 else int(c) for c in honesty.suggested_class.tolist()],
    }
