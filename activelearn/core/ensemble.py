"""A deep ensemble of small CNNs trained together as one vectorized model.

All members share one architecture; their parameters are stacked on a leading member axis
(M, ...). Member m draws its initialisation, its data order and its augmentation/dropout
randomness from its own seed (`EnsembleConfig.member_seed(m)`), through its own
`torch.Generator`s, all on the CPU so every device sees the same numbers. The loss is the sum
of the members' losses and Adam is elementwise, so a member trained inside the ensemble follows
the same trajectory as that member trained alone (`EnsembleConfig.for_member(m)`), up to float
rounding.

Four formulations compute the same function (see benchmarks/ensemble_speed.py):
- "grouped": member activations stacked on the channel axis, convolutions with groups=M and
  dense layers as batched matmuls (`torch.baddbmm`); one kernel per layer for all members.
- "hybrid": convolutions per member (oneDNN's grouped convolution is about 2x slower than M
  ungrouped ones on CPU), dense layers batched; inference in cache-sized micro-batches.
- "vmap": `torch.func.vmap` over per-member functional code.
- "loop": a Python loop over members (the reference).
"auto" picks "grouped" on CUDA/MPS, where one launch per layer for all members is what pays;
on CPU it trains with "hybrid" and scores with "loop" (the batched dense head gains nothing
at inference there and its stacking costs 4-6%; measured: benchmarks/README.md). The training
step is joint in every formulation: one summed loss, one backward, one Adam step over the
stacked parameters. On CUDA, full-size steps are replayed from a captured CUDA graph
(`train_step.py`; `cuda_graphs=False` turns it off): same kernels, a fraction of the launches.

Architecture ("small_cnn.v1"): conv5x5/stride2(c1)-ReLU, conv3x3(c2)-maxpool2-ReLU,
linear(hidden)-ReLU-dropout, linear(n_classes). The strided stem does the job of conv+pool at a
quarter of the memory traffic, which on CPU is what bounds a first layer with 1-3 input
channels. Inputs are resized to `image_size` when they differ; uint8 is scaled by 1/255.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from activelearn.core.checkpoint import read_checkpoint, write_checkpoint
from activelearn.core.devices import DEVICE_NAMES, resolve_device, wide_float
from activelearn.core.learner import FitHistory, FitProgress
from activelearn.core.network import (
    ARCHITECTURE,
    FORWARDS,
    auto_formulations,
    init_member,
    param_shapes,
    shift_images,
)
from activelearn.core.train_step import WARMUP_STEPS, StepRunner

__all__ = [
    "ARCHITECTURE",
    "FORMULATIONS",
    "Ensemble",
    "EnsembleConfig",
    "FitHistory",
    "FitProgress",
    "member_seed",
]

FORMULATIONS: tuple[str, ...] = ("auto", "grouped", "hybrid", "vmap", "loop")
# Inference micro-batch on CPU: larger batches fall out of cache (measured ~40% slower at 1024).
_CPU_MICRO_BATCH = 256

# Independent random streams of one member, each seeded from (member seed, stream).
_STREAM_INIT, _STREAM_ORDER, _STREAM_NOISE = 0, 1, 2


def member_seed(seed: int, member: int) -> int:
    """The seed of member `member` of an ensemble seeded with `seed` (63-bit, via SeedSequence)."""
    state = np.random.SeedSequence(seed, spawn_key=(member,)).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def _generator(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int((int(state[0]) << 32) | int(state[1])) & (2**63 - 1))


@dataclass(frozen=True)
class EnsembleConfig:
    """Training and architecture settings of an ensemble. Every field has a working default."""

    members: int = 5
    epochs: int = 20  # fixed budget (max epochs when early stopping)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "mps"
    early_stopping: bool = False  # hold out val_fraction of the labeled set, patience in epochs
    val_fraction: float = 0.1
    patience: int = 3
    augment: bool = False  # light: random shifts of up to 2 px
    class_weighting: bool = False  # inverse-frequency loss weights
    mixed_precision: bool = False  # CUDA only (bfloat16 autocast)
    # Additions (all optional):
    member_seeds: tuple[int, ...] | None = None  # explicit per-member seeds; default member_seed()
    widths: tuple[int, int] = (32, 64)  # conv channels
    hidden: int = 128  # dense width
    dropout: float = 0.0  # before the last layer, masks drawn from each member's own generator
    formulation: str = "auto"  # "auto" | "grouped" | "hybrid" | "vmap" | "loop"; speed only
    warm_start: bool = False  # refit continues from the current weights instead of re-initialising
    progress_every: int = 10  # within an epoch, call `progress` every this many batches
    cuda_graphs: bool = True  # CUDA: replay full-size training steps from a captured graph

    def __post_init__(self) -> None:
        problems = []
        if self.members < 1:
            problems.append(f"members must be >= 1 (got {self.members})")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if not self.lr > 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0 (got {self.weight_decay})")
        if self.seed < 0:
            problems.append(f"seed must be >= 0 (got {self.seed})")
        if self.device not in DEVICE_NAMES:
            problems.append(
                f"device must be one of {', '.join(DEVICE_NAMES)} (got {self.device!r})"
            )
        if not 0.0 < self.val_fraction < 1.0:
            problems.append(f"val_fraction must be in (0, 1) (got {self.val_fraction})")
        if self.patience < 1:
            problems.append(f"patience must be >= 1 (got {self.patience})")
        if self.member_seeds is not None and len(self.member_seeds) != self.members:
            problems.append(
                f"member_seeds has {len(self.member_seeds)} seeds for {self.members} members"
            )
        if len(self.widths) != 2 or min(self.widths) < 1 or self.hidden < 1:
            problems.append("widths must be two positive ints and hidden positive")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.formulation not in FORMULATIONS:
            problems.append(
                f"formulation must be one of {', '.join(FORMULATIONS)} (got {self.formulation!r})"
            )
        if self.progress_every < 1:
            problems.append(f"progress_every must be >= 1 (got {self.progress_every})")
        if problems:
            raise ValueError("invalid EnsembleConfig: " + "; ".join(problems))

    def member_seed(self, member: int) -> int:
        """The seed that drives member `member` (init, data order, augmentation, dropout)."""
        if not 0 <= member < self.members:
            raise ValueError(f"member must be in [0, {self.members}); got {member}")
        if self.member_seeds is not None:
            return int(self.member_seeds[member])
        return member_seed(self.seed, member)

    def for_member(self, member: int) -> EnsembleConfig:
        """A one-member config that trains exactly member `member` of this ensemble, alone."""
        return replace(self, members=1, member_seeds=(self.member_seed(member),))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnsembleConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EnsembleConfig fields in saved config: {unknown}")
        values = dict(data)
        for name in ("member_seeds", "widths"):
            if values.get(name) is not None:
                values[name] = tuple(int(v) for v in values[name])
        return cls(**values)


class Ensemble:
    """M CNN members with stacked parameters; see the module docstring for the formulation."""

    def __init__(
        self, config: EnsembleConfig, *, in_channels: int, n_classes: int, image_size: int
    ) -> None:
        if in_channels < 1 or n_classes < 1 or image_size < 4:
            raise ValueError(
                "in_channels and n_classes must be >= 1 and image_size >= 4; got "
                f"{in_channels}, {n_classes}, {image_size}"
            )
        self.config = config
        self.in_channels = int(in_channels)
        self.n_classes = int(n_classes)
        self.image_size = int(image_size)
        self.members = config.members
        self.device = resolve_device(config.device)
        self.formulation, self.inference_formulation = (
            auto_formulations(self.device)
            if config.formulation == "auto"
            else (config.formulation, config.formulation)
        )
        self.fitted = False
        self._shapes = param_shapes(
            self.in_channels, self.n_classes, self.image_size, config.widths, config.hidden
        )
        self._params = self._initial_params()

    # --- parameters -------------------------------------------------------------------------

    def _initial_params(self) -> dict[str, Tensor]:
        per_member = [
            init_member(self._shapes, _generator(self.config.member_seed(i), _STREAM_INIT))
            for i in range(self.members)
        ]
        return {
            name: torch.stack([p[name] for p in per_member]).to(self.device)
            for name in self._shapes
        }

    def state_dict(self) -> dict[str, Tensor]:
        """Stacked parameters, each (M, ...), as CPU copies."""
        return {k: v.detach().cpu().clone() for k, v in self._params.items()}

    # --- inputs -----------------------------------------------------------------------------

    def _prepare(self, x: Tensor | np.ndarray) -> Tensor:
        """Validate (N, C, H, W), scale uint8, resize to image_size; returns float32 on device."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, Tensor):
            raise ValueError(f"x must be a tensor or numpy array; got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"x must have shape (N, C, H, W); got {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has {x.shape[1]} channels but the ensemble expects {self.in_channels}"
            )
        if x.dtype == torch.uint8:
            x = x.to(self.device).to(torch.float32) / 255.0
        elif x.is_floating_point():
            x = x.to(self.device, torch.float32)
        else:
            raise ValueError(f"x must be float (values in [0, 1]) or uint8; got {x.dtype}")
        if x.shape[-2:] != (self.image_size, self.image_size) and x.shape[0] > 0:
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return x

    def _autocast(self) -> torch.autocast:
        enabled = self.config.mixed_precision and self.device.type == "cuda"
        # No weight-cast cache: CUDA graph capture requires it off, and members' weights change
        # every step anyway.
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=False
        )

    # --- training ---------------------------------------------------------------------------

    def fit(
        self, x: Tensor, y: Tensor, *, progress: Callable[[FitProgress], None] | None = None
    ) -> FitHistory:
        """Train every member on (x, y). Exceptions raised by `progress` propagate (cancel).

        From scratch unless `config.warm_start`. With early stopping, a slice of
        `val_fraction` of the labeled set (chosen from `config.seed`, shared by all members) is
        held out when at least 10 labels exist; each member keeps its best-validation weights
        and stops counting patience on its own; training ends when all members ran out.
        """
        cfg = self.config
        if not isinstance(y, Tensor):
            y = torch.as_tensor(y)
        if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"y must be a 1-D integer tensor; got {tuple(y.shape)} {y.dtype}")
        if len(y) == 0:
            raise ValueError("cannot fit on an empty labeled set (N == 0)")
        if isinstance(x, Tensor | np.ndarray) and len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
        if int(y.min()) < 0 or int(y.max()) >= self.n_classes:
            raise ValueError(
                f"labels must be in [0, {self.n_classes}); got range "
                f"[{int(y.min())}, {int(y.max())}]"
            )
        x = self._prepare(x)
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values")
        y = y.to(torch.long).cpu()
        start = time.perf_counter()
        m = self.members

        n = len(y)
        n_val = round(n * cfg.val_fraction) if cfg.early_stopping and n >= 10 else 0
        if n_val > 0:
            order = torch.randperm(n, generator=_generator(cfg.seed, _STREAM_ORDER))
            val_idx, train_idx = order[:n_val], order[n_val:]
        else:
            val_idx, train_idx = torch.zeros(0, dtype=torch.long), torch.arange(n)
        x_train, y_train = x[train_idx.to(self.device)], y[train_idx]
        x_val, y_val = x[val_idx.to(self.device)], y[val_idx].to(self.device)
        n_train = len(y_train)

        weight = None
        if cfg.class_weighting:
            counts = torch.bincount(y_train, minlength=self.n_classes).to(torch.float32)
            present = counts > 0
            weight = torch.zeros(self.n_classes)
            weight[present] = n_train / (present.sum() * counts[present])
            weight = weight.to(self.device)

        if not cfg.warm_start or not self.fitted:
            self._params = self._initial_params()
        params = {k: v.detach().clone().requires_grad_(True) for k, v in self._params.items()}
        forward = FORWARDS[self.formulation]
        order_gens = [_generator(cfg.member_seed(i), _STREAM_ORDER) for i in range(m)]
        noise_gens = [_generator(cfg.member_seed(i), _STREAM_NOISE) for i in range(m)]
        y_train_dev = y_train.to(self.device)

        steps = math.ceil(n_train / cfg.batch_size)
        graph_batch = self._graph_batch(n_train)
        optimizer = torch.optim.Adam(
            params.values(),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            capturable=graph_batch is not None,
        )

        def compute(idx: Tensor, shifts: Tensor | None, keep: Tensor | None) -> Tensor:
            b = idx.shape[1]
            xb = x_train[idx.reshape(-1)]  # (M*B, C, H, W)
            if shifts is not None:
                xb = shift_images(xb, shifts)
            xb = xb.reshape(m, b, *xb.shape[1:])
            with self._autocast():
                logits = forward(params, xb, keep)  # (M, B, n_classes)
            return self._member_losses(logits.float(), y_train_dev[idx], weight)  # (M,)

        run_step = StepRunner(compute, optimizer, list(params.values()), graph_batch=graph_batch)
        train_loss: list[list[float]] = [[] for _ in range(m)]
        val_loss: list[list[float]] | None = [[] for _ in range(m)] if n_val else None
        best = torch.full((m,), math.inf)
        best_epoch = [0] * m
        bad_epochs = torch.zeros(m, dtype=torch.long)
        best_params = {k: v.detach().clone() for k, v in params.items()} if n_val else None
        epochs_run = 0

        try:
            for epoch in range(1, cfg.epochs + 1):
                perms = torch.stack(
                    [torch.randperm(n_train, generator=g) for g in order_gens]
                )  # (M, N)
                perms_dev = perms.to(self.device)  # one copy per epoch, not one per step
                # Summed on the device: reading a loss back every step would make a GPU wait for
                # each step to finish; it is read only when progress is reported.
                running = torch.zeros(m, dtype=wide_float(self.device), device=self.device)
                seen = 0
                for step in range(steps):
                    idx_dev = perms_dev[:, step * cfg.batch_size : (step + 1) * cfg.batch_size]
                    b = idx_dev.shape[1]  # idx_dev: (M, B)
                    shifts = keep = None
                    if cfg.augment:
                        shifts = torch.cat(
                            [torch.randint(-2, 3, (b, 2), generator=g) for g in noise_gens]
                        ).to(self.device)
                    if cfg.dropout > 0:
                        keep = torch.stack(
                            [
                                (torch.rand(b, cfg.hidden, generator=g) >= cfg.dropout).float()
                                / (1.0 - cfg.dropout)
                                for g in noise_gens
                            ]
                        ).to(self.device)
                    losses = run_step(idx_dev, shifts, keep)
                    running += losses.to(running.dtype) * b
                    seen += b
                    done = step + 1
                    if progress is not None and (done % cfg.progress_every == 0 or done == steps):
                        mean_loss = tuple((running.cpu().double() / seen).tolist())
                        progress(FitProgress(epoch, cfg.epochs, done, steps, mean_loss))
                epochs_run = epoch
                for i, v in enumerate((running.cpu().double() / seen).tolist()):
                    train_loss[i].append(v)
                if n_val and val_loss is not None and best_params is not None:
                    vl = self._eval_loss(params, x_val, y_val, weight)  # (M,)
                    for i, v in enumerate(vl.tolist()):
                        val_loss[i].append(v)
                    improved = vl < best
                    for i in torch.nonzero(improved).flatten().tolist():
                        for k in params:
                            best_params[k][i] = params[k][i].detach()
                        best_epoch[i] = epoch
                    best = torch.where(improved, vl, best)
                    bad_epochs = torch.where(improved, torch.zeros_like(bad_epochs), bad_epochs + 1)
                    if bool((bad_epochs >= cfg.patience).all()):
                        break
        finally:
            run_step.close()
        final = best_params if best_params is not None else params
        self._params = {k: v.detach().clone() for k, v in final.items()}
        self.fitted = True
        return FitHistory(
            train_loss=train_loss,
            val_loss=val_loss,
            epochs_run=epochs_run,
            seconds=time.perf_counter() - start,
            device=str(self.device),
            best_epoch=best_epoch if n_val else None,
            graph_replays=run_step.replays,
        )

    def _graph_batch(self, n_train: int) -> int | None:
        """The batch size whose steps replay a CUDA graph, or None to train eagerly."""
        cfg = self.config
        if not cfg.cuda_graphs or self.device.type != "cuda":
            return None
        per_epoch = n_train // cfg.batch_size
        size = cfg.batch_size if per_epoch else n_train
        if cfg.epochs * max(per_epoch, 1) <= WARMUP_STEPS + 1:
            return None  # too few steps for a capture to pay
        return size

    @staticmethod
    def _member_losses(logits: Tensor, y: Tensor, weight: Tensor | None) -> Tensor:
        """Per-member (weighted) mean cross-entropy. logits (M, B, K), y (M, B) -> (M,)."""
        m, b, k = logits.shape
        nll = F.cross_entropy(logits.reshape(m * b, k), y.reshape(-1), reduction="none")
        nll = nll.reshape(m, b)
        if weight is None:
            return nll.mean(1)
        w = weight[y]  # (M, B)
        return (nll * w).sum(1) / w.sum(1).clamp_min(1e-12)

    def _eval_loss(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, weight: Tensor | None
    ) -> Tensor:
        """Per-member validation loss on a shared set, without dropout. -> (M,) on CPU."""
        forward = FORWARDS[self.inference_formulation]
        total = torch.zeros(self.members, dtype=torch.float64)
        norm = torch.zeros((), dtype=torch.float64)
        chunk = 4096
        with torch.inference_mode():
            for lo in range(0, len(y), chunk):
                xc, yc = x[lo : lo + chunk], y[lo : lo + chunk]
                with self._autocast():
                    logits = forward(params, xc, None).float()  # (M, b, K)
                m, b, k = logits.shape
                nll = F.cross_entropy(
                    logits.reshape(m * b, k), yc.repeat(m), reduction="none"
                ).reshape(m, b)
                w = torch.ones_like(yc, dtype=torch.float32) if weight is None else weight[yc]
                total += (nll * w).sum(1).cpu().double()
                norm += w.sum().cpu().double()
        return (total / norm.clamp_min(1e-12)).float()

    # --- inference --------------------------------------------------------------------------

    def logits_chunk(self, x: Tensor | np.ndarray) -> Tensor:
        """Logits (M, B, n_classes) on the ensemble's device for one chunk (CPU: micro-batched)."""
        forward = FORWARDS[self.inference_formulation]
        micro = _CPU_MICRO_BATCH if self.device.type == "cpu" else max(len(x), 1)
        with torch.inference_mode():
            xc = self._prepare(x)
            with self._autocast():
                parts = [
                    forward(self._params, xc[lo : lo + micro], None).float()
                    for lo in range(0, max(len(xc), 1), micro)
                ]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def predict_proba(self, x: Tensor | np.ndarray, *, chunk_size: int = 4096) -> Tensor:
        """Each member's softmax, (M, N, n_classes) float32 on CPU. Chunked, inference mode."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (N, C, H, W); got {shape}")
        n = x.shape[0]
        out = torch.empty(self.members, n, self.n_classes, dtype=torch.float32)
        for lo in range(0, n, chunk_size):
            logits = self.logits_chunk(x[lo : lo + chunk_size])
            out[:, lo : lo + chunk_size] = torch.softmax(logits, dim=-1).cpu()
        return out

    # --- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write a checkpoint DIRECTORY `path` holding model.safetensors and config.json.

        No pickle anywhere: the tensors go through safetensors, the rest is plain JSON.
        """
        meta = {
            "learner": "cnn",
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "image_size": self.image_size,
            "fitted": self.fitted,
            "config": self.config.to_json(),
        }
        write_checkpoint(path, self.state_dict(), meta, architecture=ARCHITECTURE)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> Ensemble:
        """Read a directory written by `save`; `device` overrides the saved device setting."""
        tensors, meta = read_checkpoint(path, architecture=ARCHITECTURE)
        config = replace(EnsembleConfig.from_json(meta["config"]), device=device)
        ensemble = cls(
            config,
            in_channels=int(meta["in_channels"]),
            n_classes=int(meta["n_classes"]),
            image_size=int(meta["image_size"]),
        )
        expected = {k: (config.members, *s) for k, s in ensemble._shapes.items()}
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if got != expected:
            raise ValueError(f"checkpoint tensors do not match the config: {got} vs {expected}")
        ensemble._params = {
            k: tensors[k].to(ensemble.device, torch.float32) for k in ensemble._shapes
        }
        ensemble.fitted = bool(meta.get("fitted", True))
        return ensemble
