"""Score an unlabeled pool chunk by chunk: memory stays at one chunk plus (N,) outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from activelearn.core import acquisition
from activelearn.core.ensemble import Ensemble

__all__ = ["PoolScores", "score_pool"]

ChunkSource = Callable[[int, int], "Tensor | np.ndarray"]


@dataclass(frozen=True)
class PoolScores:
    """Per-sample scores of a pool; every field is an (N,) CPU tensor (float32 unless noted).

    The acquisition fields follow acquisition.py: HIGHER = MORE worth labeling. In particular
    `margin` is 1 - (top1 - top2) of the mean prediction, the same number as
    `acquisition.margin`. `confidence` is the max of the mean prediction and `predicted_class`
    its argmax (long).
    """

    mutual_information: Tensor
    predictive_entropy: Tensor
    expected_entropy: Tensor
    variance: Tensor
    margin: Tensor
    predicted_class: Tensor
    confidence: Tensor

    def __len__(self) -> int:
        return int(self.confidence.shape[0])


# The float (N,) fields of PoolScores, in declaration order.
_FLOAT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(PoolScores) if f.name != "predicted_class"
)


def score_pool(
    ensemble: Ensemble,
    x: Tensor | np.ndarray | ChunkSource,
    *,
    n: int | None = None,
    chunk_size: int = 2048,
    progress: Callable[[int, int], None] | None = None,
) -> PoolScores:
    """Score every pool sample with `ensemble`, under inference mode, one chunk at a time.

    x: (N, C, H, W) uint8 (scaled by 1/255 per chunk) or float in [0, 1], as a tensor or numpy
    array (numpy memmaps work), or a callable (start, stop) -> chunk, in which case `n` is
    required. `progress(done, n)` is called after every chunk; exceptions from it propagate.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    if callable(x) and not isinstance(x, Tensor | np.ndarray):
        if n is None:
            raise ValueError("n (the pool size) is required when x is a callable")
        total = int(n)
        fetch: ChunkSource = x
    else:
        if x.ndim != 4:
            raise ValueError(f"x must have shape (N, C, H, W); got {tuple(x.shape)}")
        total = int(x.shape[0]) if n is None else int(n)
        if total > x.shape[0]:
            raise ValueError(f"n={total} but x has only {x.shape[0]} samples")
        data = x

        def fetch(start: int, stop: int) -> Tensor | np.ndarray:
            return data[start:stop]

    out = {name: torch.empty(total, dtype=torch.float32) for name in _FLOAT_FIELDS}
    predicted = torch.empty(total, dtype=torch.long)
    with torch.inference_mode():
        for start in range(0, total, chunk_size):
            stop = min(start + chunk_size, total)
            chunk = fetch(start, stop)
            if isinstance(chunk, np.ndarray):
                chunk = torch.from_numpy(np.ascontiguousarray(chunk))
            if chunk.shape[0] != stop - start:
                raise ValueError(
                    f"chunk [{start}, {stop}) has {chunk.shape[0]} samples, expected {stop - start}"
                )
            probs = torch.softmax(ensemble.logits_chunk(chunk), dim=-1)  # (M, b, C) on device
            summary = acquisition.uncertainty_summary(probs)
            # One device-to-host copy per chunk rather than one per field.
            rows = torch.stack([summary[name] for name in _FLOAT_FIELDS]).float().cpu()
            for name, row in zip(_FLOAT_FIELDS, rows, strict=True):
                out[name][start:stop] = row
            predicted[start:stop] = summary["predicted_class"].cpu()
            if progress is not None:
                progress(stop, total)
    return PoolScores(predicted_class=predicted, **out)
