"""Pixel PCA and joined features, checked against hand-computed references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activelearn.core.representation import PixelPCA, join_features


def test_pixel_pca_recovers_a_line_and_its_coordinates() -> None:
    # 1x1x2 "images" on the line (a, 2a) / 255 around their mean: one component (1, 2)/sqrt(5)
    a = np.array([0, 10, 20, 30, 40], dtype=np.uint8)
    images = np.stack([a, 2 * a], axis=1).reshape(5, 1, 1, 2)
    pca = PixelPCA.fit(images, n_components=1)
    assert pca.components.shape == (1, 2)
    direction = pca.components[0] * torch.sign(pca.components[0, 0])
    torch.testing.assert_close(direction, torch.tensor([1.0, 2.0]) / 5**0.5)
    torch.testing.assert_close(pca.mean, torch.tensor([20.0, 40.0]) / 255)
    # coordinate of image i: (a_i - 20) * sqrt(5) / 255 along the component
    coords = pca.transform(images)[:, 0] * torch.sign(pca.components[0, 0])
    expected = torch.tensor([-20.0, -10.0, 0.0, 10.0, 20.0]) * 5**0.5 / 255
    torch.testing.assert_close(coords, expected)


def test_pixel_pca_handles_rgb_of_other_sizes_and_caps_components() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 3, 40, 48), dtype=np.uint8)
    pca = PixelPCA.fit(images, n_components=30, max_side=8)
    # pooled to 3 x 8 x 8 = 192 pixels; 12 images give at most 11 components
    assert pca.components.shape == (11, 192)
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(11), atol=1e-5, rtol=0)
    assert pca.transform(images[:4]).shape == (4, 11)
    with pytest.raises(ValueError):
        PixelPCA.fit(images[:1])


def test_join_features_is_unit_and_averages_the_cosines() -> None:
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # cosine between rows: 3/5
    b = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 5.0]])  # cosine: 0
    joined = join_features(a, b)
    assert joined.shape == (2, 5)
    torch.testing.assert_close(joined.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(joined[0] @ joined[1], torch.tensor((0.6 + 0.0) / 2))


def test_pixel_pca_reads_uint8_and_unit_floats_alike() -> None:
    images = np.random.default_rng(1).integers(0, 256, size=(6, 1, 4, 4), dtype=np.uint8)
    pca = PixelPCA.fit(images, n_components=3)
    as_floats = torch.as_tensor(images).float() / 255.0
    torch.testing.assert_close(pca.transform(as_floats), pca.transform(images))
