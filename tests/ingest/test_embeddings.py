"""The embedding store: round trip by sample id, atomic replacement, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activelearn.ingest.embeddings import EmbeddingsMissing, EmbeddingStore


def test_round_trip_by_sample_ids_in_any_order(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "embeddings")
    ids = np.array([40, 7, 12, 3], dtype=np.int64)
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    store.write("enc-1", ids, vectors)
    np.testing.assert_array_equal(store.load("enc-1", [12, 40]), vectors[[2, 0]])
    np.testing.assert_array_equal(store.load("enc-1", ids), vectors)
    all_ids, all_vectors = store.load_all("enc-1")
    np.testing.assert_array_equal(all_ids, [3, 7, 12, 40])
    np.testing.assert_array_equal(all_vectors, vectors[[3, 1, 2, 0]])
    assert store.versions() == ["enc-1"]


def test_a_new_write_replaces_the_version_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    store.write("v", np.array([1, 2]), np.zeros((2, 4)))
    store.write("v", np.array([1, 2, 5]), np.ones((3, 4)))
    np.testing.assert_array_equal(store.load("v", [5, 1]), np.ones((2, 4), dtype=np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npz"]
    store.write("w", np.array([9]), np.full((1, 2), 3.0))  # versions live side by side
    assert store.versions() == ["v", "w"]
    np.testing.assert_array_equal(store.load("v", [2]), np.ones((1, 4), dtype=np.float32))


def test_missing_versions_ids_and_bad_input_are_refused(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    with pytest.raises(EmbeddingsMissing, match="no embeddings for encoder version"):
        store.load("nope", [1])
    store.write("v", np.array([1, 2]), np.zeros((2, 4)))
    with pytest.raises(EmbeddingsMissing, match=r"sample ids \[3\]"):
        store.load("v", [1, 3])
    with pytest.raises(ValueError, match="unique"):
        store.write("v", np.array([1, 1]), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="invalid encoder version"):
        store.path("../escape")
