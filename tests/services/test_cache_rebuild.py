"""Settings that change how images are read, and damaged caches: shards are rebuilt from files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activelearn import Workspace
from activelearn.ingest.cache import TensorCache
from tests.services.test_rounds import TINY, make_project, run_one

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shards(project) -> list[Path]:
    return sorted(project.cache_dir.glob("shard-*.npy"))


def test_new_image_size_and_channels_rebuild_the_cache_in_the_round(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images")
    assert {np.load(p, mmap_mode="r").shape[1:] for p in _shards(project)} == {(1, 12, 12)}
    project.update_settings(image_size=16, channels=3)
    project.request_round()
    assert run_one(ws, project) == "succeeded", project.rounds()[-1].error
    assert {np.load(p, mmap_mode="r").shape[1:] for p in _shards(project)} == {(3, 16, 16)}
    # the rebuilt pixels are the files decoded at the new shape
    cache = TensorCache(project.cache_dir, channels=3, image_size=16)
    first = cache.load_one((1, 0))
    assert first.shape == (3, 16, 16) and (first[0] == first[1]).all()  # gray copied to RGB


def test_a_deleted_or_damaged_shard_is_rebuilt_from_the_stored_files(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images")
    shard = _shards(project)[0]
    before = np.load(shard)
    shard.unlink()
    project.request_round()
    assert run_one(ws, project) == "succeeded", project.rounds()[-1].error
    assert np.array_equal(np.load(shard), before)
    shard.write_bytes(b"not a numpy file")
    project.request_round()
    assert run_one(ws, project) == "succeeded", project.rounds()[-1].error
    assert np.array_equal(np.load(shard), before)


def test_a_shard_whose_file_is_gone_fails_the_round_naming_the_file(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings={**TINY})
    _shards(project)[0].unlink()
    gone = sorted((tmp_path / "images").glob("*.png"))[0]
    gone.unlink()
    project.request_round()
    assert run_one(ws, project) == "failed"
    error = project.rounds()[-1].error or ""
    assert "not rebuildable" in error and gone.name in error
