"""Optimizer steps of the joint ensemble loss, eager or replayed from a captured CUDA graph.

A training step of a small CNN ensemble launches about a hundred short kernels; on a GPU the
time goes into launching them from Python, not into running them. On CUDA the steps of the
usual batch size are therefore captured once into a CUDA graph and replayed: same kernels, same
order, same numbers, one launch. Steps of any other size (the last, partial batch of an epoch)
run eagerly with the same optimizer. The first `WARMUP_STEPS` steps of the graphed size run
eagerly on a side stream, as CUDA graph capture requires (they are real training steps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

WARMUP_STEPS = 3

# compute(idx (M, B) long, shifts (M*B, 2) long | None, keep (M, B, hidden) | None) -> losses (M,)
Compute = Callable[[Tensor, Tensor | None, Tensor | None], Tensor]


class StepRunner:
    """Runs one optimizer step per call; see the module docstring.

    `graph_batch`: the batch size whose steps are captured and replayed (None: always eager).
    The caller uses the returned losses before its next call (they live in a static buffer).
    """

    def __init__(
        self,
        compute: Compute,
        optimizer: torch.optim.Optimizer,
        params: Sequence[Tensor],
        *,
        graph_batch: int | None,
    ) -> None:
        self._compute = compute
        self._optimizer = optimizer
        self._params = list(params)
        self._graph_batch = graph_batch
        self._warm = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: list[Tensor | None] = []
        self._static_losses: Tensor | None = None
        self._graph_grads: list[Tensor | None] = []
        self.replays = 0

    def __call__(self, idx: Tensor, shifts: Tensor | None, keep: Tensor | None) -> Tensor:
        if self._graph_batch is None or idx.shape[1] != self._graph_batch:
            return self._eager(idx, shifts, keep)
        if self._warm < WARMUP_STEPS:
            self._warm += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                losses = self._eager(idx, shifts, keep)
            torch.cuda.current_stream().wait_stream(side)
            return losses
        if self._graph is None:
            self._capture(idx, shifts, keep)
        else:
            for buffer, value in zip(self._static, (idx, shifts, keep), strict=True):
                if buffer is not None and value is not None:
                    buffer.copy_(value, non_blocking=True)
        assert self._graph is not None and self._static_losses is not None
        self._graph.replay()
        self.replays += 1
        return self._static_losses

    def _eager(self, idx: Tensor, shifts: Tensor | None, keep: Tensor | None) -> Tensor:
        losses = self._compute(idx, shifts, keep)
        self._optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        self._optimizer.step()
        return losses.detach()

    def _capture(self, idx: Tensor, shifts: Tensor | None, keep: Tensor | None) -> None:
        device = idx.device
        self._static = [None if t is None else t.to(device).clone() for t in (idx, shifts, keep)]
        static_idx, static_shifts, static_keep = self._static
        assert static_idx is not None
        # Gradients allocated during capture live in the graph's pool; replays overwrite them.
        self._optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            losses = self._compute(static_idx, static_shifts, static_keep)
            losses.sum().backward()
            self._optimizer.step()
            self._static_losses = losses.detach()
        self._graph = graph
        self._graph_grads = [p.grad for p in self._params]  # keep the captured buffers alive

    def close(self) -> None:
        """Release the graph and its memory pool."""
        self._graph = None
        self._static = []
        self._static_losses = None
        self._graph_grads = []
        for p in self._params:
            p.grad = None
