"""The representation stage: build_features on generated RGB and grey images, embed, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from activelearn.core.representation import (
    EncoderConfig,
    FeatureConfig,
    FeaturePipeline,
    HogConfig,
    RepresentationConfig,
    build_features,
)
from activelearn.core.representation.pipeline import _pca

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shapes(
    n: int, *, size: tuple[int, int], mode: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """n Pillow drawings, half ellipses and half crosses, at random places, sizes and colours:
    (n, C, H, W) uint8 and (n,) labels (0 ellipse, 1 cross)."""
    rng = np.random.default_rng(seed)
    width, height = size
    images, labels = [], []
    for i in range(n):
        image = Image.new(mode, size, "black" if mode == "L" else (20, 30, 40))
        draw = ImageDraw.Draw(image)
        colour = int(rng.integers(150, 256)) if mode == "L" else tuple(rng.integers(80, 256, 3))
        r = rng.uniform(0.25, 0.4) * min(size)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        if i % 2 == 0:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=3)
        else:
            draw.line([cx - r, cy - r, cx + r, cy + r], fill=colour, width=3)
            draw.line([cx - r, cy + r, cx + r, cy - r], fill=colour, width=3)
        array = np.asarray(image)
        images.append(array[None] if mode == "L" else array.transpose(2, 0, 1))
        labels.append(i % 2)
    return np.stack(images), np.array(labels)


def _one_nn_accuracy(pool: torch.Tensor, pool_y: np.ndarray, test: torch.Tensor, test_y) -> float:
    nearest = (test @ pool.T).argmax(1).numpy()
    return float((pool_y[nearest] == test_y).mean())


def test_rgb_photos_of_another_size_separate_by_shape() -> None:
    images, labels = _shapes(80, size=(45, 30), mode="RGB", seed=0)
    pipeline, features = build_features(images[:60], FeatureConfig(output_dim=16), seed=0)
    assert features.shape == (60, 16) and features.dtype == torch.float32
    torch.testing.assert_close(features.norm(dim=1), torch.ones(60))
    # embed maps the pool as build_features did, and new images with the pool's fit
    torch.testing.assert_close(pipeline.embed(images[:60]), features, atol=1e-5, rtol=0)
    test = pipeline.embed(images[60:])
    assert test.shape == (20, 16) and pipeline.dim == 16
    # ellipses and crosses in random colours and places: HOG's nearest neighbour tells them apart
    assert _one_nn_accuracy(features, labels[:60], test, labels[60:]) >= 0.9


def test_pixel_and_ssl_parts_join_and_the_saved_pipeline_embeds_the_same(tmp_path: Path) -> None:
    images, _ = _shapes(24, size=(20, 20), mode="L", seed=1)
    ssl = RepresentationConfig(
        encoder=EncoderConfig(channels=1, image_size=20, width=4, depth=2, projection_dim=8),
        epochs=1,
        batch_size=8,
    )
    config = FeatureConfig(
        hog=(HogConfig(image_size=16, cell_size=4),), pixel_components=5, ssl=ssl, output_dim=0
    )
    seen = []
    pipeline, features = build_features(images, config, seed=3, progress=seen.append)
    # no projection: the joined parts, 324 HOG + 5 PCA + 8 SSL columns, each part 1/sqrt(3)
    assert features.shape == (24, 324 + 5 + 8) == (24, pipeline.dim)
    torch.testing.assert_close(features[:, 324:329].norm(dim=1), torch.full((24,), 3**-0.5))
    assert [p.epoch for p in seen] == [1]

    path = tmp_path / "features.safetensors"
    pipeline.save(path)
    loaded = FeaturePipeline.load(path)
    assert loaded.config == config
    assert loaded.pixel_pca is not None and pipeline.pixel_pca is not None
    torch.testing.assert_close(loaded.pixel_pca.components, pipeline.pixel_pca.components)
    assert loaded.encoder is not None and pipeline.encoder is not None
    for name, tensor in pipeline.encoder.encoder.state_dict().items():
        torch.testing.assert_close(loaded.encoder.encoder.state_dict()[name], tensor)
    torch.testing.assert_close(loaded.embed(images), features, atol=1e-5, rtol=0)
    # floats in [0, 1] are the same images as uint8 0..255 to every part
    as_floats = torch.as_tensor(images).float() / 255.0
    torch.testing.assert_close(loaded.embed(as_floats), features, atol=1e-5, rtol=0)


def test_projection_round_trips_and_configs_are_checked(tmp_path: Path) -> None:
    images, _ = _shapes(30, size=(28, 28), mode="L", seed=2)
    pipeline, features = build_features(images, FeatureConfig(output_dim=8), seed=0)
    assert pipeline.projection is not None and pipeline.projection.shape == (8, 1764 + 324)
    # projection rows are orthonormal principal axes
    torch.testing.assert_close(
        pipeline.projection @ pipeline.projection.T, torch.eye(8), atol=1e-4, rtol=0
    )
    path = tmp_path / "features.safetensors"
    pipeline.save(path)
    loaded = FeaturePipeline.load(path)
    assert loaded.projection is not None
    torch.testing.assert_close(loaded.projection, pipeline.projection, rtol=0, atol=0)
    torch.testing.assert_close(loaded.embed(images), features, atol=1e-5, rtol=0)
    assert FeatureConfig.from_json(FeatureConfig().to_json()) == FeatureConfig()
    with pytest.raises(ValueError):
        FeatureConfig(hog=(), pixel_components=0, ssl=None)
    with pytest.raises(ValueError):
        build_features(images[:1])


def test_output_pca_finds_the_direction_of_largest_spread() -> None:
    # rows (a, 2a, e) + 3: a and e centred and orthogonal, |e| << |a|, so the scatter matrix has
    # eigenvectors (1, 2, 0)/sqrt(5) (eigenvalue 5 |a|^2 = 50) and (0, 0, 1) (|e|^2 = 0.14)
    a = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    e = torch.tensor([0.1, -0.2, 0.2, -0.2, 0.1])
    rows = torch.stack([a, 2 * a, e], dim=1) + 3.0
    mean, components = _pca(rows, 2)
    torch.testing.assert_close(mean, torch.tensor([3.0, 3.0, 3.0]))
    first = components[0] * torch.sign(components[0, 0])
    torch.testing.assert_close(first, torch.tensor([1.0, 2.0, 0.0]) / 5**0.5, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        components[1].abs(), torch.tensor([0.0, 0.0, 1.0]), atol=1e-5, rtol=0
    )
