"""TensorCache: what is written is what is read back, in the order asked, or CacheMissing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activelearn.ingest.cache import CacheMissing, TensorCache


def random_pixels(count: int, *, seed: int, channels: int = 1, size: int = 28) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, channels, size, size), dtype=np.uint8)


def test_round_trip_is_exact_and_keeps_the_order(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "project-1", channels=3, image_size=16)
    first = random_pixels(5, seed=0, channels=3, size=16)
    second = random_pixels(3, seed=1, channels=3, size=16)
    first_id, second_id = cache.write_shard(first), cache.write_shard(second)
    assert second_id > first_id
    refs = [(second_id, 2), (first_id, 0), (first_id, 4), (second_id, 0), (first_id, 0)]
    loaded = cache.load(refs)
    expected = np.stack([second[2], first[0], first[4], second[0], first[0]])
    assert loaded.dtype == np.uint8 and loaded.shape == (5, 3, 16, 16)
    np.testing.assert_array_equal(loaded, expected)
    np.testing.assert_array_equal(cache.load_one((first_id, 3)), first[3])
    assert cache.load([]).shape == (0, 3, 16, 16)


def test_a_new_instance_reads_old_shards_and_continues_the_ids(tmp_path: Path) -> None:
    pixels = random_pixels(4, seed=2)
    old = TensorCache(tmp_path, channels=1, image_size=28)
    shard_id = old.write_shard(pixels)
    new = TensorCache(tmp_path, channels=1, image_size=28)
    np.testing.assert_array_equal(new.load([(shard_id, i) for i in range(4)]), pixels)
    assert new.write_shard(pixels) > shard_id
    assert old.write_shard(pixels) > shard_id + 1, "ids never collide across instances"
    assert not list(tmp_path.glob("*.tmp")), "no temporary files are left behind"


def test_shards_are_plain_npy_without_pickle(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path, channels=1, image_size=28)
    pixels = random_pixels(2, seed=3)
    shard_id = cache.write_shard(pixels)
    np.testing.assert_array_equal(np.load(cache.shard_path(shard_id), allow_pickle=False), pixels)


def test_missing_shard(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path, channels=1, image_size=28)
    shard_id = cache.write_shard(random_pixels(2, seed=4))
    with pytest.raises(CacheMissing) as caught:
        cache.load([(shard_id, 0), (shard_id + 7, 0)])
    assert caught.value.shard_id == shard_id + 7


def test_corrupt_shard(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path, channels=1, image_size=28)
    shard_id = cache.write_shard(random_pixels(2, seed=5))
    cache.shard_path(shard_id).write_bytes(b"not a numpy file")
    with pytest.raises(CacheMissing) as caught:
        cache.load_one((shard_id, 0))
    assert caught.value.shard_id == shard_id


def test_truncated_shard(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path, channels=1, image_size=28)
    shard_id = cache.write_shard(random_pixels(4, seed=6))
    path = cache.shard_path(shard_id)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CacheMissing):
        cache.load_one((shard_id, 3))


def test_index_past_the_end_or_wrong_shape(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path, channels=1, image_size=28)
    shard_id = cache.write_shard(random_pixels(2, seed=7))
    with pytest.raises(CacheMissing):
        cache.load_one((shard_id, 2))
    with pytest.raises(CacheMissing):
        cache.load_one((shard_id, -1))
    resized = TensorCache(tmp_path, channels=1, image_size=32)  # the project's size changed
    with pytest.raises(CacheMissing):
        resized.load_one((shard_id, 0))


def test_write_checks_shape_and_type(tmp_path: Path) -> None:
    cache = TensorCache(tmp_path, channels=1, image_size=28)
    with pytest.raises(ValueError):
        cache.write_shard(random_pixels(2, seed=8, channels=3))
    with pytest.raises(ValueError):
        cache.write_shard(random_pixels(2, seed=8).astype(np.float32))
    with pytest.raises(ValueError):
        cache.write_shard(random_pixels(0, seed=8))


def test_many_shards_beyond_the_open_map_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activelearn.ingest import cache as cache_module

    monkeypatch.setattr(cache_module, "MAX_OPEN_SHARDS", 2)
    cache = TensorCache(tmp_path, channels=1, image_size=4)
    shards = [random_pixels(3, seed=s, size=4) for s in range(5)]
    ids = [cache.write_shard(pixels) for pixels in shards]
    refs = [(shard_id, 1) for shard_id in reversed(ids)] + [(ids[0], 2)]
    expected = np.stack([pixels[1] for pixels in reversed(shards)] + [shards[0][2]])
    np.testing.assert_array_equal(cache.load(refs), expected)
