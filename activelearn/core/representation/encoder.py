"""A small convolutional encoder for self-supervised features, for 1 or 3 channels and any size."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Encoder", "EncoderConfig"]


@dataclass(frozen=True)
class EncoderConfig:
    """Trunk: `depth` blocks of `convs_per_block` x conv3x3-BN-ReLU, a 2x2 max-pool
    after each block but the last, global average pooling; projection: a 2-layer MLP (SimCLR)."""

    channels: int = 1
    image_size: int = 28
    width: int = 16  # channels of the first block; doubled per block
    depth: int = 3
    convs_per_block: int = 1
    projection_dim: int = 64

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3; got {self.channels}")
        sizes = (self.width, self.depth, self.convs_per_block, self.projection_dim)
        if self.image_size < 8 or min(sizes) < 1:
            raise ValueError(f"invalid encoder config {self}")

    @property
    def embedding_dim(self) -> int:
        return self.width * 2 ** (self.depth - 1)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EncoderConfig:
        return cls(**data)


class Encoder(nn.Module):
    """images (B, C, H, W) in [0, 1] -> `embed`: (B, D) features; `project`: (B, P) for the loss."""

    def __init__(self, config: EncoderConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = config.channels
        for block in range(config.depth):
            c_out = config.width * 2**block
            for _ in range(config.convs_per_block):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            if block < config.depth - 1:
                layers.append(nn.MaxPool2d(2))
        self.trunk = nn.Sequential(*layers)
        d = config.embedding_dim
        self.projection = nn.Sequential(
            nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, config.projection_dim)
        )
        self._init(generator)

    def _init(self, generator: torch.Generator | None) -> None:
        # Seeded through the generator: no global RNG state is read or changed.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            elif isinstance(module, nn.Linear):
                nn.init.kaiming_uniform_(module.weight, a=5**0.5, generator=generator)
                bound = 1.0 / module.in_features**0.5
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)

    def embed(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, D) pooled trunk features (before the projection head)."""
        return self.trunk(images * 2.0 - 1.0).mean(dim=(2, 3))

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, P) projected features (unnormalised)."""
        return self.projection(self.embed(images))


def normalize(features: Tensor) -> Tensor:
    """Rows to unit length (cosine geometry for kNN, clustering and linear heads)."""
    return F.normalize(features, dim=-1)
