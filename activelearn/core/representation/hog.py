"""Histograms of oriented gradients (Dalal & Triggs, CVPR 2005) over a batch, in torch.

For images of any channel count and size, resized to `image_size` square:
1. gradients by centred differences [-1, 0, 1] (zero at the border rows/columns, as in
   scikit-image's `hog`); for several channels, each pixel takes the channel of largest magnitude;
2. each pixel votes its gradient magnitude into `orientations` unsigned-orientation bins over
   [0, pi), split linearly between the two nearest bin centres;
3. votes are summed over cells of `cell_size` x `cell_size` pixels;
4. blocks of `block_cells` x `block_cells` cells (stride one cell) are L2-Hys normalised: L2,
   clipped at 0.2, L2 again.
The result is the blocks' histograms flattened: (N, blocks^2 * block_cells^2 * orientations).

Written over the batch in torch rather than calling scikit-image per image: one pass over 4,000
digits takes well under a second on one core, and no new dependency.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["HogConfig", "hog"]

_NOISE = 0.25 / 255


@dataclass(frozen=True)
class HogConfig:
    image_size: int = 28  # images are resized (antialiased) to this square first
    cell_size: int = 4
    block_cells: int = 2
    orientations: int = 9
    clip: float = 0.2  # L2-Hys clipping

    def __post_init__(self) -> None:
        cells = self.image_size // self.cell_size if self.cell_size > 0 else 0
        if self.orientations < 1 or self.block_cells < 1 or cells < self.block_cells:
            raise ValueError(f"invalid HOG config {self}")

    @property
    def dim(self) -> int:
        blocks = self.image_size // self.cell_size - self.block_cells + 1
        return blocks * blocks * self.block_cells**2 * self.orientations

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HogConfig:
        return cls(**data)


def _resize(x: Tensor, size: int) -> Tensor:
    if x.shape[2] == size and x.shape[3] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """(N, C, H, W) -> gy, gx (N, H, W): centred differences, the strongest channel per pixel."""
    gx = torch.zeros_like(x)
    gy = torch.zeros_like(x)
    gx[..., :, 1:-1] = x[..., :, 2:] - x[..., :, :-2]
    gy[..., 1:-1, :] = x[..., 2:, :] - x[..., :-2, :]
    if x.shape[1] == 1:
        return gy[:, 0], gx[:, 0]
    strongest = (gx * gx + gy * gy).argmax(dim=1, keepdim=True)  # (N, 1, H, W)
    return gy.gather(1, strongest)[:, 0], gx.gather(1, strongest)[:, 0]


def hog(images: Tensor, config: HogConfig | None = None) -> Tensor:
    """(N, C, H, W) floats in [0, 1] (or uint8) -> (N, config.dim) float32 HOG descriptors."""
    cfg = config or HogConfig()
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got {tuple(x.shape)}")
    x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
    x = _resize(x, cfg.image_size)
    n = x.shape[0]
    gy, gx = _gradients(x)
    magnitude = torch.sqrt(gx * gx + gy * gy)  # (N, H, W)
    # Under a quarter of one grey level (1/255) is float rounding from the resize, not an edge:
    # block normalisation would blow it up into a full-size histogram (a flat image would get one).
    magnitude = torch.where(magnitude < _NOISE, torch.zeros_like(magnitude), magnitude)
    # unsigned orientation in [0, pi); bin b's centre is (b + 0.5) * pi / B
    angle = torch.remainder(torch.atan2(gy, gx), math.pi)
    position = angle / (math.pi / cfg.orientations) - 0.5  # in [-0.5, B - 0.5)
    low = torch.floor(position)
    upper_share = position - low  # linear split between the two nearest centres
    low_bin = torch.remainder(low, cfg.orientations).long()
    high_bin = torch.remainder(low + 1, cfg.orientations).long()
    votes = torch.zeros(n, cfg.orientations, *magnitude.shape[1:])  # (N, B, H, W)
    votes.scatter_add_(1, low_bin.unsqueeze(1), (magnitude * (1 - upper_share)).unsqueeze(1))
    votes.scatter_add_(1, high_bin.unsqueeze(1), (magnitude * upper_share).unsqueeze(1))
    # cells: sums over cell_size^2 pixels (a trailing partial cell is dropped, as in skimage)
    cells = F.avg_pool2d(votes, cfg.cell_size) * cfg.cell_size**2  # (N, B, h, w)
    b = cfg.block_cells
    blocks = cells.unfold(2, b, 1).unfold(3, b, 1)  # (N, B, bh, bw, b, b)
    blocks = blocks.permute(0, 2, 3, 4, 5, 1).reshape(n, -1, b * b * cfg.orientations)
    blocks = _l2(blocks)
    blocks = _l2(blocks.clamp_max(cfg.clip))
    return blocks.reshape(n, -1)


def _l2(v: Tensor, eps: float = 1e-5) -> Tensor:
    """v / sqrt(|v|^2 + eps^2) over the last axis (Dalal & Triggs; scikit-image's form)."""
    return v / torch.sqrt((v * v).sum(-1, keepdim=True) + eps * eps)
