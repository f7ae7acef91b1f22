"""A pretrained torchvision backbone as a frozen feature extractor, from a LOCAL weights file.

The `backbone` setting `torchvision:<architecture>` names a torchvision.models builder; it is
built with `weights=None` (nothing is ever downloaded), the weights are read from the local
`backbone_weights` file (safetensors; a `.pth`/`.pt` only through torch.load(weights_only=True),
which refuses pickled code), its classifier layer is replaced by the identity, and the result
maps images to the pooled features before that layer:

    embed(images (N, C, H, W) uint8) -> (N, D) float32 unit rows on the CPU

Images are scaled to [0, 1], grey ones repeated to 3 channels, resized to `input_size` and
normalised with the ImageNet mean and standard deviation (what torchvision's weights expect).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file
from torch import Tensor, nn

__all__ = ["BACKBONE_PREFIX", "BackboneError", "EmbedFunction", "load_backbone"]

BACKBONE_PREFIX = "torchvision:"
SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pth", ".pt")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSIFIER_ATTRIBUTES = ("fc", "classifier", "heads", "head")

EmbedFunction = Callable[[Tensor | np.ndarray], Tensor]


class BackboneError(ValueError):
    """The backbone setting or its weights file cannot be used (the message says why)."""


def architecture_of(setting: str) -> str:
    """ "torchvision:resnet18" -> "resnet18"; BackboneError for anything else."""
    arch = setting.removeprefix(BACKBONE_PREFIX)
    if not setting.startswith(BACKBONE_PREFIX) or not arch:
        raise BackboneError(
            f"a pretrained backbone is {BACKBONE_PREFIX}<architecture>; got {setting!r}"
        )
    return arch


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a local safetensors file, or a .pth/.pt read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"backbone weights file not found: {path}")
    if path.suffix == SAFETENSORS_SUFFIX:
        return load_file(str(path))
    if path.suffix in TORCH_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # weights_only refuses pickled objects other than tensors
            raise BackboneError(f"{path} is not a plain tensor state dict: {error}") from error
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise BackboneError(f"{path} does not hold a state dict of tensors")
        return state
    raise BackboneError(f"backbone weights must be .safetensors, .pth or .pt; got {path.name}")


def _strip_classifier(model: nn.Module, arch: str) -> None:
    """Replace the last Linear of the model's classifier (fc / classifier / heads / head)."""
    for name in CLASSIFIER_ATTRIBUTES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Linear):
            setattr(model, name, nn.Identity())
            return
        if isinstance(module, nn.Sequential):
            for index in reversed(range(len(module))):
                if isinstance(module[index], nn.Linear):
                    module[index] = nn.Identity()
                    return
    raise BackboneError(f"cannot find the classifier layer of {arch} to remove")


def build_backbone(setting: str, weights: str | Path) -> nn.Module:
    """The architecture with the local weights loaded (strictly) and its classifier removed."""
    arch = architecture_of(setting)
    try:
        builder = torchvision.models.get_model_builder(arch)
    except ValueError:
        raise BackboneError(f"torchvision has no model {arch!r}") from None
    model = builder(weights=None)  # never a download: the weights come from the local file
    try:
        model.load_state_dict(read_weights(weights), strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise BackboneError(f"{weights} does not fit {arch}: {first}") from error
    _strip_classifier(model, arch)
    return model.eval()


def load_backbone(
    setting: str,
    weights: str | Path,
    *,
    input_size: int = 224,
    batch_size: int = 64,
    device: str = "cpu",
) -> EmbedFunction:
    """The embed function of a pretrained backbone; see the module docstring."""
    model = build_backbone(setting, weights).to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def embed(images: Tensor | np.ndarray) -> Tensor:
        x_all = torch.as_tensor(np.asarray(images))
        if x_all.ndim != 4 or x_all.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N, 1|3, H, W); got {tuple(x_all.shape)}")
        parts = []
        for start in range(0, x_all.shape[0], batch_size):
            x = x_all[start : start + batch_size].to(device, torch.float32) / 255.0
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", antialias=True)
            parts.append(F.normalize(model((x - mean) / std).flatten(1), dim=1).cpu())
        return torch.cat(parts) if parts else torch.zeros(0, 0)

    return embed
