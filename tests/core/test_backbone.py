"""A pretrained torchvision backbone from a local weights file (created here: no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from activelearn.core.representation.backbone import BackboneError, load_backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def resnet18() -> torchvision.models.ResNet:
    return torchvision.models.resnet18(weights=None).eval()


def images(n: int = 3, channels: int = 3, size: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, channels, size, size), dtype=np.uint8)


def reference(model: torchvision.models.ResNet, pixels: np.ndarray, size: int) -> torch.Tensor:
    """By hand: [0, 1], grey -> 3 channels, resize, ImageNet normalisation, every layer but fc."""
    x = torch.as_tensor(pixels).float() / 255.0
    x = x.expand(-1, 3, -1, -1)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    with torch.no_grad():
        m = model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        features = torch.flatten(m.avgpool(x), 1)  # (N, 512): fc's input
    return torch.nn.functional.normalize(features, dim=1)


def test_safetensors_weights_give_the_penultimate_features(resnet18, tmp_path: Path) -> None:
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18.state_dict().items()}, str(path))
    embed = load_backbone("torchvision:resnet18", path, input_size=64)
    for pixels in (images(), images(channels=1)):
        features = embed(pixels)
        assert features.shape == (3, 512)
        torch.testing.assert_close(features, reference(resnet18, pixels, 64))


def test_a_pth_state_dict_loads_with_weights_only(resnet18, tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18.state_dict(), path)
    features = load_backbone("torchvision:resnet18", path, input_size=64)(images())
    torch.testing.assert_close(features, reference(resnet18, images(), 64))


class Payload:
    """Any pickled object beyond plain tensors: weights_only refuses to run its code."""


def test_unusable_weights_and_names_are_refused(resnet18, tmp_path: Path) -> None:
    pickled = tmp_path / "model.pth"
    torch.save({"model": Payload()}, pickled)
    with pytest.raises(BackboneError, match="not a plain tensor state dict"):
        load_backbone("torchvision:resnet18", pickled)
    other = tmp_path / "resnet34.safetensors"
    save_file(torchvision.models.resnet34(weights=None).state_dict(), str(other))
    with pytest.raises(BackboneError, match="does not fit resnet18"):
        load_backbone("torchvision:resnet18", other)
    with pytest.raises(BackboneError, match="torchvision has no model 'nonet'"):
        load_backbone("torchvision:nonet", other)
    with pytest.raises(BackboneError, match="not found"):
        load_backbone("torchvision:resnet18", tmp_path / "absent.safetensors")
    with pytest.raises(BackboneError, match=r"\.safetensors, \.pth or \.pt"):
        (tmp_path / "w.bin").write_bytes(b"")
        load_backbone("torchvision:resnet18", tmp_path / "w.bin")
