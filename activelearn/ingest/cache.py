"""Decoded, resized image tensors kept on disk per project, so training never decodes a file again.

A project's cache is a folder of shards, "shard-000001.npy", each an (n, C, S, S) uint8 array
written once by np.save (no pickle) and read back through memory maps. A sample row stores its
(shard_id, index) pair. A shard that is missing, unreadable, or of the wrong shape (the project's
image size or channels changed) raises CacheMissing; the caller rebuilds it from the stored
files (activelearn.services.cache_rebuild) and writes it back under its id with replace_shard.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAX_OPEN_SHARDS = 64  # memory maps kept open (each holds a file descriptor)
_SHARD_NAME = re.compile(r"^shard-(\d+)\.npy$")


class CacheMissing(Exception):
    """A shard is missing or corrupt; rebuild it from the original files."""

    def __init__(self, shard_id: int, detail: str = "missing or corrupt") -> None:
        super().__init__(f"cache shard {shard_id} is {detail}")
        self.shard_id = shard_id


class TensorCache:
    """Append-only shards of (n, channels, image_size, image_size) uint8 pixels under root."""

    def __init__(self, root: Path, *, channels: int, image_size: int) -> None:
        if channels < 1 or image_size < 1:
            raise ValueError("channels and image_size must be positive")
        self.root = Path(root)
        self.channels = channels
        self.image_size = image_size
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()  # shard id -> memmap, LRU
        self._next_id = max(self._shard_ids(), default=0) + 1

    @property
    def item_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def shard_path(self, shard_id: int) -> Path:
        return self.root / f"shard-{shard_id:06d}.npy"

    def _write_temporary(self, pixels: np.ndarray) -> str:
        """Checked pixels saved and synced to a temporary file beside the shards; its path."""
        self._check_pixels(pixels)
        descriptor, temporary = tempfile.mkstemp(prefix=".shard-", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                np.save(handle, np.ascontiguousarray(pixels), allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            os.unlink(temporary)
            raise
        return temporary

    def write_shard(self, pixels: np.ndarray) -> int:
        """(n, C, S, S) uint8 -> the new shard's id; ids only increase.

        The array is written to a temporary file and published under its final name in one
        step, without overwriting: a hard link fails if another process took that id first (we
        then take the next one). Where hard links are not supported, os.replace is used.
        """
        temporary = self._write_temporary(pixels)
        try:
            with self._lock:
                shard_id = self._publish(temporary)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return shard_id

    def replace_shard(self, shard_id: int, pixels: np.ndarray) -> None:
        """Write shard `shard_id` again (a rebuild): same id, same item order, new pixels.

        Published with one os.replace, so a reader sees the old file or the new one, never half.
        """
        temporary = self._write_temporary(pixels)
        try:
            with self._lock:
                os.replace(temporary, self.shard_path(shard_id))
                self._open.pop(shard_id, None)
                self._next_id = max(self._next_id, shard_id + 1)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)

    def _check_pixels(self, pixels: np.ndarray) -> None:
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
            raise ValueError("pixels must be a uint8 numpy array")
        if pixels.ndim != 4 or pixels.shape[1:] != self.item_shape or pixels.shape[0] < 1:
            raise ValueError(
                f"pixels must have shape (n >= 1, {', '.join(map(str, self.item_shape))}), "
                f"got {pixels.shape}"
            )

    def _publish(self, temporary: str) -> int:
        shard_id = max(self._next_id, max(self._shard_ids(), default=0) + 1)
        while True:
            target = self.shard_path(shard_id)
            try:
                os.link(temporary, target)
            except FileExistsError:
                shard_id += 1
                continue
            except OSError:  # no hard links on this file system
                if target.exists():
                    shard_id += 1
                    continue
                os.replace(temporary, target)
            self._next_id = shard_id + 1
            return shard_id

    def load(self, refs: Sequence[tuple[int, int]]) -> np.ndarray:
        """(shard_id, index) pairs -> (len(refs), C, S, S) uint8, in the order given."""
        out = np.empty((len(refs), *self.item_shape), dtype=np.uint8)
        if len(refs) == 0:
            return out
        pairs = np.asarray(refs, dtype=np.int64).reshape(len(refs), 2)  # (N, 2)
        for shard_id in np.unique(pairs[:, 0]):
            rows = np.flatnonzero(pairs[:, 0] == shard_id)  # positions in refs
            indices = pairs[rows, 1]
            shard = self._shard(int(shard_id))
            if indices.min() < 0 or indices.max() >= shard.shape[0]:
                raise CacheMissing(int(shard_id), f"shorter than expected ({shard.shape[0]} items)")
            try:
                out[rows] = shard[indices]
            except (OSError, ValueError) as error:
                raise CacheMissing(int(shard_id), f"unreadable ({error})") from error
        return out

    def stale_shards(self, shard_ids: Sequence[int]) -> list[int]:
        """Those of `shard_ids` that are missing, unreadable or of another shape (to rebuild)."""
        stale = []
        for shard_id in sorted(set(int(s) for s in shard_ids)):
            try:
                self._shard(shard_id)
            except CacheMissing:
                stale.append(shard_id)
        return stale

    def load_one(self, ref: tuple[int, int]) -> np.ndarray:
        """(shard_id, index) -> (C, S, S) uint8."""
        return self.load([ref])[0]

    def close(self) -> None:
        """Drop the open memory maps (they are reopened on demand)."""
        with self._lock:
            self._open.clear()

    def _shard(self, shard_id: int) -> np.ndarray:
        with self._lock:
            shard = self._open.get(shard_id)
            if shard is not None:
                self._open.move_to_end(shard_id)
                return shard
        path = self.shard_path(shard_id)
        try:
            shard = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError as error:
            raise CacheMissing(shard_id, "missing") from error
        except (OSError, ValueError, EOFError) as error:
            raise CacheMissing(shard_id, "corrupt") from error
        if (
            not isinstance(shard, np.ndarray)
            or shard.dtype != np.uint8
            or shard.ndim != 4
            or shard.shape[1:] != self.item_shape
        ):
            shape = getattr(shard, "shape", None)
            raise CacheMissing(shard_id, f"of the wrong shape or type ({shape})")
        with self._lock:
            self._open[shard_id] = shard
            while len(self._open) > MAX_OPEN_SHARDS:
                self._open.popitem(last=False)
        return shard

    def _shard_ids(self) -> list[int]:
        ids = []
        for name in os.listdir(self.root):
            match = _SHARD_NAME.match(name)
            if match:
                ids.append(int(match.group(1)))
        return ids
