"""The self-supervised encoder: NT-Xent against a hand computation, augmentations, training."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from activelearn.core.representation import (
    AugmentConfig,
    EncoderConfig,
    RepresentationCancelled,
    RepresentationConfig,
    augment,
    embed_images,
    load_encoder,
    nt_xent,
    save_encoder,
    train_encoder,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_nt_xent_matches_a_hand_computation() -> None:
    # views a1=(1,0), b1=(0,1); twins a2=(1,0), b2=(0,-1); tau = 1.
    # a: positive cos 1, negatives 0, 0 -> -1 + log(e + 2); b: positive -1 -> 1 + log(1/e + 2)
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[3.0, 0.0], [0.0, -2.0]])  # lengths do not matter: normalised
    expected = (math.log(math.e + 2) + math.log(1 / math.e + 2)) / 2
    assert nt_xent(z1, z2, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # temperature 0.5 doubles every similarity
    expected_half = (-2 + math.log(math.e**2 + 2) + 2 + math.log(math.e**-2 + 2)) / 2
    assert nt_xent(z1, z2, temperature=0.5).item() == pytest.approx(expected_half, rel=1e-6)


def test_augment_defaults_fit_the_image_kind() -> None:
    digits = AugmentConfig.for_images(channels=1)
    assert not digits.horizontal_flip and digits.color_jitter == 0
    photos = AugmentConfig.for_images(channels=3)
    assert photos.horizontal_flip and photos.color_jitter > 0
    assert AugmentConfig.for_images(channels=1, kind="photo").color_jitter == 0
    with pytest.raises(ValueError, match="unknown image kind"):
        AugmentConfig.for_images(channels=1, kind="x-ray")


def test_identity_augment_returns_the_image_and_flip_mirrors_it() -> None:
    images = torch.rand(4, 1, 10, 10)
    identity = AugmentConfig(
        zoom=(1.0, 1.0),
        max_rotation_degrees=0,
        max_shear=0,
        max_translate=0,
        stroke_probability=0,
        noise_std=0,
    )
    out = augment(images, identity, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)
    flips = AugmentConfig(**{**identity.to_json(), "zoom": (1.0, 1.0), "horizontal_flip": True})
    out = augment(images, flips, torch.Generator().manual_seed(0))
    for i in range(4):  # each image is either itself or its mirror
        same = torch.allclose(out[i], images[i], atol=1e-5)
        mirrored = torch.allclose(out[i], images[i].flip(-1), atol=1e-5)
        assert same or mirrored


def test_augment_is_deterministic_and_stays_in_range() -> None:
    images = torch.rand(8, 3, 16, 16)
    config = AugmentConfig.for_images(channels=3)
    a = augment(images, config, torch.Generator().manual_seed(3))
    b = augment(images, config, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == images.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, augment(images, config, torch.Generator().manual_seed(4)))


def _tiny_config(channels: int = 1, size: int = 12, epochs: int = 2) -> RepresentationConfig:
    return RepresentationConfig(
        encoder=EncoderConfig(
            channels=channels, image_size=size, width=4, depth=2, projection_dim=8
        ),
        augment=AugmentConfig.for_images(channels=channels),
        epochs=epochs,
        batch_size=8,
        device="cpu",
    )


def test_training_is_deterministic_reports_progress_and_saves_exactly(tmp_path: Path) -> None:
    images = (np.random.default_rng(0).random((16, 1, 12, 12)) * 255).astype(np.uint8)
    seen = []
    first = train_encoder(images, _tiny_config(), seed=7, progress=seen.append)
    second = train_encoder(images, _tiny_config(), seed=7)
    assert [p.epoch for p in seen] == [1, 2] and all(p.images_per_second > 0 for p in seen)
    assert all(math.isfinite(p.loss) for p in seen) and first.losses == [p.loss for p in seen]
    for name, tensor in first.encoder.state_dict().items():
        torch.testing.assert_close(tensor, second.encoder.state_dict()[name], rtol=0, atol=0)
    other = train_encoder(images, _tiny_config(), seed=8)
    assert not torch.equal(first.encoder.trunk[0].weight, other.encoder.trunk[0].weight), (
        "a different seed must give a different encoder"
    )

    path = tmp_path / "encoder.safetensors"
    save_encoder(first, path)
    loaded = load_encoder(path)
    assert loaded.config == first.config and loaded.seed == 7 and loaded.losses == first.losses
    for name, tensor in first.encoder.state_dict().items():
        torch.testing.assert_close(loaded.encoder.state_dict()[name], tensor, rtol=0, atol=0)
    vectors = embed_images(loaded.encoder, images)
    assert vectors.shape == (16, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # the trained copy runs channels_last: same numbers up to float rounding
    np.testing.assert_allclose(vectors, embed_images(first.encoder, images), atol=1e-6, rtol=0)


def test_rgb_images_of_another_size_train_and_embed() -> None:
    images = torch.rand(12, 3, 20, 20)
    trained = train_encoder(images, _tiny_config(channels=3, size=20, epochs=1), seed=0)
    assert embed_images(trained.encoder, images).shape == (12, 8)
    with pytest.raises(ValueError, match="channels"):
        train_encoder(torch.rand(12, 1, 20, 20), _tiny_config(channels=3, size=20), seed=0)


def test_cancellation_stops_training() -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(RepresentationCancelled):
        train_encoder(torch.rand(16, 1, 12, 12), _tiny_config(epochs=5), seed=0, should_stop=stop)
    assert len(calls) == 3


def test_new_core_modules_import_only_torch_numpy_safetensors() -> None:
    code = (
        "import sys\n"
        "import activelearn.core.representation, activelearn.core.embedding_learner\n"
        "import activelearn.core.typicality, activelearn.core.knn_graph\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'streamlit', 'sqlalchemy', 'db', 'pandas', 'plotly', 'alembic', 'sklearn'})\n"
        "ours = [m for m in sys.modules if m.startswith('activelearn.') "
        "and not m.startswith('activelearn.core')]\n"
        "assert not bad and not ours, (bad, ours)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
