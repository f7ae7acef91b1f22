"""Embeddings stored once per sample: one array file per encoder version under the data dir.

`{root}/{version}.npz` holds `sample_ids` (N,) int64, sorted and unique, and `embeddings`
(N, D) float32, written uncompressed without pickle to a temporary file in the same folder and
published with os.replace, so a reader sees the old file or the new one, never half of one.
A version names the encoder that produced the vectors (e.g. its weights' hash); switching
versions is switching files.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingStore", "EmbeddingsMissing", "select_rows"]

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class EmbeddingsMissing(Exception):
    """No embeddings for this encoder version, or not for some of the asked sample ids."""


class EmbeddingStore:
    """Per-version (sample id -> vector) arrays under root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, version: str) -> Path:
        if not _VERSION.match(version):
            raise ValueError(f"invalid encoder version {version!r} (letters, digits, . _ -)")
        return self.root / f"{version}.npz"

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.npz"))

    def write(self, version: str, sample_ids: np.ndarray, embeddings: np.ndarray) -> Path:
        """(N,) ids, (N, D) vectors -> the published file (replacing that version atomically)."""
        ids = np.asarray(sample_ids, dtype=np.int64)
        vectors = np.asarray(embeddings, dtype=np.float32)
        if ids.ndim != 1 or vectors.ndim != 2 or len(ids) != len(vectors):
            raise ValueError(
                f"need (N,) ids and (N, D) embeddings; got {ids.shape}, {vectors.shape}"
            )
        if len(np.unique(ids)) != len(ids):
            raise ValueError("sample ids must be unique")
        order = np.argsort(ids, kind="stable")
        target = self.path(version)
        self.root.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=self.root, prefix=f".{version}-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, sample_ids=ids[order], embeddings=vectors[order])
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target

    def load_all(self, version: str) -> tuple[np.ndarray, np.ndarray]:
        """-> (N,) sorted sample ids, (N, D) float32 embeddings."""
        path = self.path(version)
        if not path.exists():
            raise EmbeddingsMissing(f"no embeddings for encoder version {version!r}")
        with np.load(path, allow_pickle=False) as data:
            return data["sample_ids"], data["embeddings"]

    def load(self, version: str, sample_ids: np.ndarray) -> np.ndarray:
        """(K,) sample ids, any order -> (K, D) float32 rows in that order."""
        ids, vectors = self.load_all(version)
        return select_rows(ids, vectors, sample_ids, version=version)


def select_rows(
    ids: np.ndarray, vectors: np.ndarray, sample_ids: np.ndarray, *, version: str
) -> np.ndarray:
    """The rows of (N,) sorted `ids` / (N, D) `vectors` for (K,) sample ids, in their order;
    EmbeddingsMissing names the ids the version lacks."""
    wanted = np.asarray(sample_ids, dtype=np.int64)
    pos = np.searchsorted(ids, wanted)
    pos = np.clip(pos, 0, max(len(ids) - 1, 0))
    found = (ids[pos] == wanted) if len(ids) else np.zeros(len(wanted), dtype=bool)
    if not found.all():
        missing = wanted[~found][:5].tolist()
        raise EmbeddingsMissing(
            f"encoder version {version!r} has no embeddings for sample ids {missing}"
            + (" ..." if (~found).sum() > 5 else "")
        )
    return vectors[pos]
