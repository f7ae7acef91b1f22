"""The label page's image helper: large files shrunk, shown the way the model sees them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from activelearn.ui import components


def _shown(path: Path, target: int = 336) -> Image.Image:
    return Image.open(io.BytesIO(components.upscaled_png(str(path), target)))


def test_a_large_photo_is_shrunk_not_sent_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (1500, 2400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    shown = _shown(path)
    assert max(shown.size) == 336 and shown.size == (336, 210)


def test_a_small_digit_is_enlarged_by_a_whole_factor(tmp_path: Path) -> None:
    path = tmp_path / "digit.png"
    Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)).save(path)
    shown = _shown(path)
    assert shown.size == (336, 336)
    assert np.asarray(shown)[:12, :12].std() == 0  # one source pixel -> a 12x12 block


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((20, 20), 32768, dtype=np.uint16)).save(path)
    shown = np.asarray(_shown(path))
    assert shown.min() == shown.max() == 128


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "turned.jpg"
    image = Image.new("RGB", (40, 20), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees
    image.save(path, exif=exif)
    assert _shown(path, 40).size == (20, 40)
