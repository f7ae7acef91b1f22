"""The members' network ("small_cnn.v1"): parameter shapes, initialisation, and four
formulations of the same forward pass over parameters stacked on a member axis (M, ...).

Architecture: conv5x5/stride2(c1)-ReLU, conv3x3(c2)-maxpool2-ReLU, linear(hidden)-ReLU-dropout,
linear(n_classes). See activelearn.core.ensemble for why there are four formulations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ARCHITECTURE = "small_cnn.v1"


def param_shapes(
    in_channels: int, n_classes: int, image_size: int, widths: tuple[int, int], hidden: int
) -> dict[str, tuple[int, ...]]:
    c1, c2 = widths
    side = (image_size + 1) // 2 // 2  # stem: ceil(s / 2); then maxpool: floor(/ 2)
    return {
        "conv1.weight": (c1, in_channels, 5, 5),
        "conv1.bias": (c1,),
        "conv2.weight": (c2, c1, 3, 3),
        "conv2.bias": (c2,),
        "fc1.weight": (hidden, c2 * side * side),
        "fc1.bias": (hidden,),
        "fc2.weight": (n_classes, hidden),
        "fc2.bias": (n_classes,),
    }


def init_member(shapes: dict[str, tuple[int, ...]], gen: torch.Generator) -> dict[str, Tensor]:
    """He-uniform weights for ReLU layers, LeCun-uniform for the output layer, zero biases."""
    params = {}
    for name, shape in shapes.items():
        if name.endswith(".bias"):
            params[name] = torch.zeros(shape)
            continue
        fan_in = math.prod(shape[1:])
        gain = 1.0 if name.startswith("fc2") else math.sqrt(2.0)
        bound = gain * math.sqrt(3.0 / fan_in)
        params[name] = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound
    return params


# --- per-member forward (used by "loop" and, vmapped, by "vmap") ---------------------------------


def _member_features(params: dict[str, Tensor], x: Tensor, i: int | None = None) -> Tensor:
    """The convolutional trunk of one member (member i of stacked params, or unstacked params):
    x (B, C, H, W) -> features (B, F)."""

    def p(name: str) -> Tensor:
        return params[name] if i is None else params[name][i]

    h = F.relu(F.conv2d(x, p("conv1.weight"), p("conv1.bias"), stride=2, padding=2))
    h = F.conv2d(h, p("conv2.weight"), p("conv2.bias"), padding=1)
    return F.relu(F.max_pool2d(h, 2)).flatten(1)


def _member_forward(params: dict[str, Tensor], x: Tensor, keep: Tensor | None) -> Tensor:
    """One member. x (B, C, H, W) -> logits (B, n_classes). keep: (B, hidden) dropout scale."""
    h = F.relu(F.linear(_member_features(params, x), params["fc1.weight"], params["fc1.bias"]))
    if keep is not None:
        h = h * keep
    return F.linear(h, params["fc2.weight"], params["fc2.bias"])


def _forward_loop(params: dict[str, Tensor], x: Tensor, keep: Tensor | None) -> Tensor:
    m = params["conv1.bias"].shape[0]
    outs = []
    for i in range(m):
        xi = x if x.ndim == 4 else x[i]
        outs.append(
            _member_forward(
                {k: v[i] for k, v in params.items()}, xi, None if keep is None else keep[i]
            )
        )
    return torch.stack(outs)


def _forward_vmap(params: dict[str, Tensor], x: Tensor, keep: Tensor | None) -> Tensor:
    x_dim = None if x.ndim == 4 else 0
    keep_dim = None if keep is None else 0
    return torch.func.vmap(_member_forward, in_dims=(0, x_dim, keep_dim))(params, x, keep)


def _dense_head(params: dict[str, Tensor], h: Tensor, keep: Tensor | None) -> Tensor:
    """Both dense layers for all members as batched matmuls. h (M, B, F) -> (M, B, n_classes)."""
    h = torch.baddbmm(params["fc1.bias"].unsqueeze(1), h, params["fc1.weight"].transpose(1, 2))
    h = F.relu(h)  # (M, B, hidden)
    if keep is not None:
        h = h * keep
    return torch.baddbmm(params["fc2.bias"].unsqueeze(1), h, params["fc2.weight"].transpose(1, 2))


def _forward_grouped(params: dict[str, Tensor], x: Tensor, keep: Tensor | None) -> Tensor:
    """All members at once: channels stacked per member, groups=M convs, batched matmuls.

    x: (B, C, H, W) shared by all members, or (M, B, C, H, W) one batch per member.
    Returns logits (M, B, n_classes).
    """
    w1 = params["conv1.weight"]  # (M, c1, C, 5, 5)
    m, c1 = w1.shape[:2]
    w1 = w1.reshape(m * c1, *w1.shape[2:])
    if x.ndim == 4:  # shared input: one ordinary conv with M*c1 output channels
        h = F.conv2d(x, w1, params["conv1.bias"].reshape(-1), stride=2, padding=2)
    else:
        b = x.shape[1]
        xs = x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:])  # (B, M*C, H, W)
        h = F.conv2d(xs, w1, params["conv1.bias"].reshape(-1), stride=2, padding=2, groups=m)
    h = F.relu(h)  # (B, M*c1, H/2, W/2)
    w2 = params["conv2.weight"]  # (M, c2, c1, 3, 3)
    w2 = w2.reshape(-1, *w2.shape[2:])
    h = F.conv2d(h, w2, params["conv2.bias"].reshape(-1), padding=1, groups=m)
    h = F.relu(F.max_pool2d(h, 2))  # (B, M*c2, H/4, W/4)
    h = h.reshape(h.shape[0], m, -1).transpose(0, 1)  # (M, B, c2*H/4*W/4)
    return _dense_head(params, h, keep)


def _forward_hybrid(params: dict[str, Tensor], x: Tensor, keep: Tensor | None) -> Tensor:
    """Convolutions member by member (fast oneDNN path on CPU), dense layers batched.

    x: (B, C, H, W) shared, or (M, B, C, H, W). Returns logits (M, B, n_classes).
    """
    m = params["conv1.weight"].shape[0]
    features = [_member_features(params, x if x.ndim == 4 else x[i], i) for i in range(m)]
    return _dense_head(params, torch.stack(features), keep)  # stack: (M, B, F)


FORWARDS: dict[str, Callable[[dict[str, Tensor], Tensor, Tensor | None], Tensor]] = {
    "grouped": _forward_grouped,
    "hybrid": _forward_hybrid,
    "vmap": _forward_vmap,
    "loop": _forward_loop,
}


def auto_formulations(device: torch.device) -> tuple[str, str]:
    """(training, inference) formulations measured fastest on a device type
    (benchmarks/ensemble_speed.py)."""
    return ("hybrid", "loop") if device.type == "cpu" else ("grouped", "grouped")


def shift_images(x: Tensor, shifts: Tensor) -> Tensor:
    """Shift each image by integer (dy, dx) in [-2, 2], zero fill. x (B, C, H, W), shifts (B, 2)."""
    b, c, h, w = x.shape
    pad = 2
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = (pad - shifts[:, 0])[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = (pad - shifts[:, 1])[:, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
