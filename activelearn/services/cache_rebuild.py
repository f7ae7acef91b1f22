"""Rebuild tensor cache shards from the stored files: a shard that is missing or damaged, or of
another shape because the project's image_size or channels changed, is decoded again."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy import Engine

from activelearn.ingest.cache import CacheMissing, TensorCache
from activelearn.ingest.decode import ImageRejected, decode_image
from activelearn.ingest.sources import read_file
from db import queries
from db.engine import read_session

# (shards rebuilt so far, shards to rebuild)
RebuildProgress = Callable[[int, int], None]


def rebuild_shard(engine: Engine, project_id: int, cache: TensorCache, shard_id: int) -> int:
    """Decode shard `shard_id`'s samples again from their stored files at the cache's shape and
    write the shard back under the same id; returns the images decoded.

    Raises CacheMissing naming the file when one is gone or changed since it was imported.
    """
    with read_session(engine) as session:
        rows = queries.samples_in_shard(session, project_id, shard_id)
    if not rows:
        raise CacheMissing(shard_id, "not used by any sample of this project")
    pixels = np.zeros((rows[-1][0] + 1, *cache.item_shape), dtype=np.uint8)
    for index, path, sha256 in rows:
        data, error = read_file(path)
        if data is None:
            raise CacheMissing(shard_id, f"not rebuildable: {path}: {error}")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise CacheMissing(shard_id, f"not rebuildable: {path} changed since it was imported")
        try:
            decoded = decode_image(data, image_size=cache.image_size, channels=cache.channels)
        except ImageRejected as rejected:
            raise CacheMissing(shard_id, f"not rebuildable: {path}: {rejected.reason}") from None
        pixels[index] = decoded.pixels
    cache.replace_shard(shard_id, pixels)
    return len(rows)


def load_pixels(
    engine: Engine,
    project_id: int,
    cache: TensorCache,
    refs: Sequence[tuple[int, int]],
    *,
    progress: RebuildProgress | None = None,
) -> np.ndarray:
    """cache.load(refs) -> (len(refs), C, S, S), rebuilding first every stale shard it needs."""
    stale = cache.stale_shards([shard for shard, _ in refs])
    for done, shard_id in enumerate(stale):
        if progress is not None:
            progress(done, len(stale))
        rebuild_shard(engine, project_id, cache, shard_id)
    if stale and progress is not None:
        progress(len(stale), len(stale))
    try:
        return cache.load(refs)
    except CacheMissing as missing:  # e.g. a shard shorter than its rows: rebuild it once
        rebuild_shard(engine, project_id, cache, missing.shard_id)
        return cache.load(refs)
