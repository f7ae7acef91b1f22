"""Batched image augmentations for contrastive training, drawn from an explicit torch.Generator.

Views come from one random affine warp per image (crop-and-resize as a zoom, small rotation,
shear and translation, one `grid_sample` for the whole batch), then optional horizontal flips,
colour jitter (RGB only), random stroke thickening/thinning (grey images) and pixel noise.
Digits and text must not be flipped, so `horizontal_flip` is off unless asked for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AugmentConfig", "augment"]


@dataclass(frozen=True)
class AugmentConfig:
    """What a view may change. Images are (B, C, H, W) floats in [0, 1]."""

    zoom: tuple[float, float] = (0.8, 1.3)  # >1 zooms in (a crop), <1 zooms out (padding)
    max_rotation_degrees: float = 15.0
    max_shear: float = 0.15
    max_translate: float = 0.12  # share of the image side
    horizontal_flip: bool = False  # never for digits or text
    color_jitter: float = 0.0  # brightness/contrast/saturation strength; applied to RGB only
    grayscale_probability: float = 0.0  # RGB only
    stroke_probability: float = 0.3  # dilate or erode (3x3) a grey image's strokes
    noise_std: float = 0.05

    @classmethod
    def for_images(cls, *, channels: int, kind: str = "auto") -> AugmentConfig:
        """Defaults by image kind: "digits"/"text" (no flips, no colour), "photo" (flips, jitter).

        "auto" reads 1 channel as digits-like and 3 channels as photos.
        """
        if kind == "auto":
            kind = "digits" if channels == 1 else "photo"
        if kind in ("digits", "text"):
            return cls()
        if kind == "photo":
            return cls(
                zoom=(1.0, 1.8),
                max_rotation_degrees=10.0,
                max_shear=0.05,
                horizontal_flip=True,
                color_jitter=0.4 if channels == 3 else 0.0,
                grayscale_probability=0.2 if channels == 3 else 0.0,
                stroke_probability=0.0,
            )
        raise ValueError(f"unknown image kind {kind!r}; known: auto, digits, text, photo")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AugmentConfig:
        return cls(**{**data, "zoom": tuple(data["zoom"])})


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def augment(images: Tensor, config: AugmentConfig, generator: torch.Generator) -> Tensor:
    """(B, C, H, W) floats in [0, 1] -> one random view of each, same shape, in [0, 1]."""
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W); got {tuple(images.shape)}")
    b, c, _, _ = images.shape
    dev = images.device
    gen = generator

    # Affine warp: output pixel -> input coordinate, in grid_sample's [-1, 1] coordinates.
    scale = torch.exp(_uniform(b, math.log(config.zoom[0]), math.log(config.zoom[1]), gen, dev))
    angle = _uniform(b, -1.0, 1.0, gen, dev) * math.radians(config.max_rotation_degrees)
    shear = _uniform(b, -config.max_shear, config.max_shear, gen, dev)
    shift = _uniform(2 * b, -2.0, 2.0, gen, dev).view(b, 2) * config.max_translate
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = cos / scale
    theta[:, 0, 1] = (-sin + shear * cos) / scale
    theta[:, 1, 0] = sin / scale
    theta[:, 1, 1] = (cos + shear * sin) / scale
    theta[:, :, 2] = shift
    if config.horizontal_flip:
        flip = torch.rand(b, generator=gen, device=dev) < 0.5
        theta[flip, 0, :2] = -theta[flip, 0, :2]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    if c == 1 and config.stroke_probability > 0:
        # Stroke width varies between writers: max-pool thickens, min-pool thins.
        roll = torch.rand(b, generator=gen, device=dev)
        thick = (roll < config.stroke_probability / 2).view(b, 1, 1, 1)
        thin = (roll >= config.stroke_probability / 2) & (roll < config.stroke_probability)
        dilated = F.max_pool2d(out, 3, stride=1, padding=1)
        eroded = -F.max_pool2d(-out, 3, stride=1, padding=1)
        out = torch.where(thick, dilated, torch.where(thin.view(b, 1, 1, 1), eroded, out))

    if c == 3 and config.color_jitter > 0:
        s = config.color_jitter
        brightness = _uniform(b, 1 - s, 1 + s, gen, dev).view(b, 1, 1, 1)
        contrast = _uniform(b, 1 - s, 1 + s, gen, dev).view(b, 1, 1, 1)
        saturation = _uniform(b, 1 - s, 1 + s, gen, dev).view(b, 1, 1, 1)
        out = out * brightness
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast + mean
        grey = out.mean(dim=1, keepdim=True)
        out = (out - grey) * saturation + grey
    if c == 3 and config.grayscale_probability > 0:
        to_grey = torch.rand(b, generator=gen, device=dev) < config.grayscale_probability
        out = torch.where(
            to_grey.view(b, 1, 1, 1), out.mean(dim=1, keepdim=True).expand_as(out), out
        )
    if config.noise_std > 0:
        out = out + config.noise_std * torch.randn(out.shape, generator=gen, device=dev)
    return out.clamp(0.0, 1.0)
