"""HOG over a batch, checked against hand-computed histograms of step edges."""

from __future__ import annotations

import math

import pytest
import torch

from activelearn.core.representation import HogConfig, hog

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _step(size: int, *, vertical: bool, contrast: float = 1.0) -> torch.Tensor:
    """(size, size) image, 0 before the middle column (vertical) or row, `contrast` after it."""
    line = (torch.arange(size) >= size // 2).float() * contrast
    return line.expand(size, size).clone() if vertical else line.unsqueeze(1).expand(size, size)


def test_a_horizontal_edge_votes_into_the_90_degree_bin_only() -> None:
    # rows 3 and 4 have gy = 1 (centred difference across the step), gx = 0: angle pi/2, the
    # centre of bin 4 of 9 ((4 + 0.5) * 20 = 90 degrees); the other rows vote nothing
    image = _step(8, vertical=False).reshape(1, 1, 8, 8)
    cfg = HogConfig(image_size=8, cell_size=4, block_cells=1, orientations=9)
    out = hog(image, cfg).reshape(2, 2, 9)  # one block per cell, row-major
    expected = torch.zeros(2, 2, 9)
    expected[:, :, 4] = 1.0  # each cell: 4 pixels x magnitude 1 in bin 4, then unit length
    torch.testing.assert_close(out, expected)


def test_a_vertical_edge_splits_between_the_bins_around_zero_degrees() -> None:
    # gx = 1 on columns 3 and 4, angle 0: halfway between bin 0 (10 degrees) and bin 8 (170),
    # 4 pixels x 1 x 1/2 = 2 in each; L2 -> 1/sqrt(2) each; the 0.2 clip then L2 again keeps it
    image = _step(8, vertical=True).reshape(1, 1, 8, 8)
    cfg = HogConfig(image_size=8, cell_size=4, block_cells=1, orientations=9)
    out = hog(image, cfg).reshape(2, 2, 9)
    expected = torch.zeros(2, 2, 9)
    expected[:, :, 0] = expected[:, :, 8] = 2**-0.5
    torch.testing.assert_close(out, expected)


def test_rgb_takes_the_strongest_channel_per_pixel_and_clipping_works() -> None:
    # red: a vertical step of 0.5 (gx = 0.5 on columns 3, 4); green: a horizontal step of 1
    # (gy = 1 on rows 3, 4). Top-left cell (rows 0-3, columns 0-3): column 3 rows 0-2 vote red
    # 0.5 split 0.25 / 0.25 into bins 0 and 8 -> 0.75 each; row 3 columns 0-3 vote green
    # 1 into bin 4 -> 4 (pixel (3, 3) has both; green is stronger).
    image = torch.stack(
        [_step(8, vertical=True, contrast=0.5), _step(8, vertical=False), torch.zeros(8, 8)]
    ).unsqueeze(0)
    cfg = HogConfig(image_size=8, cell_size=4, block_cells=1, orientations=9, clip=1.0)
    top_left = hog(image, cfg).reshape(2, 2, 9)[0, 0]
    expected = torch.zeros(9)
    expected[0], expected[4], expected[8] = 0.75, 4.0, 0.75
    torch.testing.assert_close(top_left, expected / math.sqrt(0.75**2 * 2 + 16))
    # with the default clip 0.2, bin 4 (0.967 after L2) is cut to 0.2 before the second L2
    clipped = hog(image, HogConfig(image_size=8, cell_size=4, block_cells=1)).reshape(2, 2, 9)
    small = 0.75 / math.sqrt(0.75**2 * 2 + 16)  # 0.181, under the clip
    expected = torch.zeros(9)
    expected[0], expected[4], expected[8] = small, 0.2, small
    torch.testing.assert_close(clipped[0, 0], expected / expected.norm())


def test_blocks_concatenate_their_cells_and_sizes_are_generic() -> None:
    # 2x2 blocks over 2x2 cells: one block holding the four cells' histograms, one L2 over all
    image = _step(8, vertical=False).reshape(1, 1, 8, 8)
    cfg = HogConfig(image_size=8, cell_size=4, block_cells=2, orientations=9)
    out = hog(image, cfg)
    assert out.shape == (1, cfg.dim) == (1, 36)
    expected = torch.zeros(2, 2, 9)
    expected[:, :, 4] = 0.5  # four equal cells after one L2 over the block
    torch.testing.assert_close(out.reshape(2, 2, 9), expected)
    # uint8 input of any size and 1 or 3 channels; a flat image has no gradient: all zeros
    flat = torch.full((3, 3, 40, 30), 128, dtype=torch.uint8)
    assert torch.equal(hog(flat), torch.zeros(3, HogConfig().dim))
    with pytest.raises(ValueError):
        HogConfig(image_size=8, cell_size=8, block_cells=2)
    with pytest.raises(ValueError):
        hog(torch.zeros(8, 8))
