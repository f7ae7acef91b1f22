"""The first import picks image_size and channels from the images unless they were chosen."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from activelearn import Workspace
from tests.conftest import write_images


def _photos(folder: Path, count: int, *, size: tuple[int, int], mode: str = "RGB") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        array = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(array, mode="RGB").convert(mode)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG" if mode == "RGB" else "PNG")
        (folder / f"photo{index}.{'jpg' if mode == 'RGB' else 'png'}").write_bytes(
            buffer.getvalue()
        )
    return folder


def test_rgb_photos_get_three_channels_and_64_px(sqlite_workspace: Workspace, tmp_path: Path):
    project = sqlite_workspace.create_project("photos", ["a", "b", "c"])
    assert project.settings.auto_image_shape
    project.import_images(_photos(tmp_path / "photos", 5, size=(400, 300)))
    settings = project.settings
    assert (settings.image_size, settings.channels, settings.auto_image_shape) == (64, 3, False)
    shard = np.load(next(project.cache_dir.glob("shard-*.npy")))
    assert shard.shape == (5, 3, 64, 64)
    # a later import keeps the shape even when its images look different
    project.import_images(write_images(tmp_path / "gray", 3)[0].parent)
    assert (project.settings.image_size, project.settings.channels) == (64, 3)


def test_small_grayscale_digits_stay_28_px_gray(sqlite_workspace: Workspace, tmp_path: Path):
    project = sqlite_workspace.create_project("digits", ["a", "b"])
    project.import_images(_photos(tmp_path / "gray", 4, size=(28, 28), mode="L"))
    assert (project.settings.image_size, project.settings.channels) == (28, 1)


def test_a_shape_given_by_hand_is_kept(sqlite_workspace: Workspace, tmp_path: Path):
    project = sqlite_workspace.create_project("x", ["a", "b"], settings={"image_size": 16})
    project.import_images(_photos(tmp_path / "photos", 3, size=(200, 200)))
    assert (project.settings.image_size, project.settings.channels) == (16, 1)
