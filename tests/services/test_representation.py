"""The representation stage in-process: request after import, claim, train on the pool only,
embed every sample once, atomic switch, regrow, cancel, stale reaping, worker order."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from activelearn import Workspace, clock
from activelearn.core.representation import FeaturePipeline
from activelearn.errors import InvalidSetting
from activelearn.ingest.cache import TensorCache
from activelearn.ingest.embeddings import EmbeddingStore
from activelearn.paths import embeddings_dir, encoder_file, project_cache_dir
from activelearn.services import features as features_module
from activelearn.services.features import compute_features
from activelearn.services.representation import (
    MAX_ATTEMPTS,
    maybe_request_representation,
    reap_stale_representations,
)
from activelearn.services.representation_runner import claim_representation, run_representation
from activelearn.services.settings import ProjectSettings
from activelearn.services.worker_loop import WorkerConfig, run_worker
from activelearn.types import RepresentationInfo
from db import representations as rep_queries
from db.engine import read_session
from db.models import Representation
from tests.conftest import png_bytes
from tests.processes import wait_for
from tests.services.test_rounds import CLASSES, make_project, write_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = {"ssl_epochs": 1}

# A job that trains for minutes (SSL encoder): long enough to cancel or kill mid-way.
SLOW = {"ssl_epochs": 1000, "backbone": "ssl"}


def job_row(ws: Workspace, job_id: int) -> Representation:
    with read_session(ws.engine) as session:
        row = rep_queries.get_representation(session, job_id)
        assert row is not None
        return row


def run_queued(ws: Workspace, worker: str = "test:1") -> str:
    job_id = claim_representation(ws.engine, worker=worker)
    assert job_id is not None
    assert job_row(ws, job_id).status == "running"
    return run_representation(ws.engine, job_id, data_dir=ws.data_dir, worker=worker)


def split_ids(ws: Workspace, project_id: int) -> dict[str, list[int]]:
    with read_session(ws.engine) as session:
        rows = rep_queries.project_samples(session, project_id)
    out: dict[str, list[int]] = {}
    for sample_id, split, _, _ in rows:
        out.setdefault(split, []).append(sample_id)
    return out


def test_import_queues_a_job_that_trains_on_the_pool_and_embeds_every_sample(
    workspace: Workspace, tmp_path: Path
):
    ws = workspace
    project = make_project(ws, tmp_path / "images", settings=FAST)  # 42 pool + 15 test images
    status = project.representation_status()
    assert status.current is None and project.embeddings() is None
    queued = status.latest
    assert isinstance(queued, RepresentationInfo)
    assert queued.status == "queued" and queued.requested_by == "auto"
    assert project.request_representation().id == queued.id  # one active job per project

    assert run_queued(ws) == "succeeded"
    done = project.representation_status().current
    assert done is not None and done.id == queued.id and done.status == "succeeded"
    assert done.phase == "done" and done.progress == 1.0 and done.finished_at is not None
    splits = split_ids(ws, project.id)
    # The encoder saw the pool only: the 15 imported test images were embedded, not trained on.
    assert done.n_images == len(splits["pool"]) == 42
    assert done.detail["n_images"] == 42 and len(splits["test"]) == 15
    assert done.detail["backbone"] == "hog" and done.detail["epochs"] == 0  # nothing to train
    assert done.n_embedded == 57 and done.device == "cpu"

    ids, vectors = project.embeddings()
    assert ids.tolist() == sorted(splits["pool"] + splits["test"])
    assert vectors.dtype == np.float32 and vectors.shape[0] == 57
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (ws.data_dir / "embeddings" / f"project-{project.id}" / f"{done.version}.npz").is_file()

    # The stored vectors are what the saved pipeline gives: reload it and compare the tensors.
    pipeline = FeaturePipeline.load(encoder_file(ws.data_dir, project.id, done.version))
    np.testing.assert_allclose(vectors, pipeline.embed(_images(ws, project)).numpy(), atol=1e-5)


def _images(ws: Workspace, project) -> np.ndarray:
    settings = project.settings
    cache = TensorCache(
        project_cache_dir(ws.data_dir, project.id),
        channels=settings.channels,
        image_size=settings.image_size,
    )
    with read_session(ws.engine) as session:
        rows = rep_queries.project_samples(session, project.id)
    return cache.load([(r[2], r[3]) for r in rows])


def test_the_ssl_backbone_trains_an_encoder_on_the_pool(sqlite_workspace: Workspace, tmp_path):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings={**FAST, "backbone": "ssl"})
    assert run_queued(ws) == "succeeded"
    done = project.representation_status().current
    assert done.detail["epoch"] == 1 and done.detail["epochs"] == 1
    assert np.isfinite(done.detail["loss"]) and done.detail["images_per_second"] > 0
    assert done.n_images == 42 and done.n_embedded == 57
    # Digits-like grayscale images: no flips, no colour jitter.
    assert done.detail["augment"]["horizontal_flip"] is False
    assert done.detail["augment"]["color_jitter"] == 0.0
    _, vectors = project.embeddings()
    pipeline = FeaturePipeline.load(encoder_file(ws.data_dir, project.id, done.version))
    assert pipeline.encoder is not None  # HOG joined with the encoder trained on the pool
    np.testing.assert_allclose(vectors, pipeline.embed(_images(ws, project)).numpy(), atol=1e-4)


def test_rounds_keep_the_old_version_until_the_new_one_flips_and_regrow_requeues(
    workspace: Workspace, tmp_path: Path
):
    ws = workspace
    project = make_project(ws, tmp_path / "images", settings=FAST, n_test=0)  # 42 pool
    assert run_queued(ws) == "succeeded"
    first = project.representation_status().current
    assert first is not None
    # 6 more pool images (14% growth) stay under the 25% default: no new job.
    rows = [(cls, 5000 + seed, None, "pool") for cls in range(3) for seed in range(2)]
    project.import_manifest(write_manifest(tmp_path / "more", rows, name="more"))
    assert project.representation_status().latest.id == first.id
    # 6 more (28% over the 42 trained on): a new job is queued by the import.
    rows = [(cls, 6000 + seed, None, "pool") for cls in range(3) for seed in range(2)]
    project.import_manifest(write_manifest(tmp_path / "more2", rows, name="more2"))
    latest = project.representation_status().latest
    assert latest.id != first.id and latest.status == "queued"
    # Until it succeeds, readers get the previous version (without the new samples).
    ids, _ = project.embeddings()
    assert len(ids) == 42
    assert project.representation_status().version == first.version
    assert run_queued(ws) == "succeeded"
    second = project.representation_status().current
    assert second.id == latest.id and second.version != first.version
    ids, _ = project.embeddings()
    assert len(ids) == 54 and second.n_images == 54
    # With regrow 0 the pool may grow without a new job.
    project.update_settings(representation_regrow=0.0)
    rows = [(cls, 7000 + seed, None, "pool") for cls in range(3) for seed in range(20)]
    project.import_manifest(write_manifest(tmp_path / "more3", rows, name="more3"))
    assert project.representation_status().latest.id == second.id


def test_new_features_in_the_settings_queue_a_job_other_settings_do_not(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=FAST, n_test=0)
    assert run_queued(ws) == "succeeded"
    first = project.representation_status().current
    project.update_settings(members=3, retrain_every=5, ssl_epochs=2)  # hog: epochs unused
    assert project.representation_status().latest.id == first.id
    project.update_settings(backbone="ssl")
    queued = project.representation_status().latest
    assert queued.id != first.id and queued.status == "queued"
    assert project.representation_status().version == first.version  # rounds keep these
    assert run_queued(ws) == "succeeded"
    current = project.representation_status().current
    assert current.id == queued.id and current.detail["backbone"] == "ssl"
    project.update_settings(ssl_epochs=1)  # the ssl encoder's epochs are its features
    assert project.representation_status().latest.status == "queued"


def test_features_changed_while_a_job_ran_queue_the_next_one_when_it_ends(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=FAST, n_test=0)
    assert run_queued(ws) == "succeeded"  # fitted with hog
    # The settings change landed while a job was running (so it queued nothing itself).
    new = project.settings.updated(backbone="ssl")
    with ws.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE projects SET settings = ? WHERE id = ?",
            (json.dumps(new.to_json()), project.id),
        )
    queued = maybe_request_representation(ws.engine, project.id)
    assert queued is not None and queued.status == "queued"
    assert run_queued(ws) == "succeeded"
    assert maybe_request_representation(ws.engine, project.id) is None  # now they match


def test_cancel_a_queued_and_a_running_job(sqlite_workspace: Workspace, tmp_path: Path):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=SLOW)
    queued = project.representation_status().latest
    assert project.cancel_representation().status == "cancelled"
    assert claim_representation(ws.engine, worker="w:1") is None
    again = project.request_representation()
    assert again.id != queued.id
    job_id = claim_representation(ws.engine, worker="w:1")
    assert job_id == again.id
    outcome: list[str] = []
    runner = threading.Thread(
        target=lambda: outcome.append(
            run_representation(ws.engine, job_id, data_dir=ws.data_dir, worker="w:1")
        )
    )
    runner.start()
    try:
        wait_for(lambda: job_row(ws, job_id).detail.get("epoch", 0) >= 2, timeout=60)
        assert project.cancel_representation().id == job_id
    finally:
        runner.join(timeout=60)
    assert outcome == ["cancelled"]
    row = job_row(ws, job_id)
    assert row.status == "cancelled" and row.error == "cancelled by request"
    assert row.version is None and project.embeddings() is None
    assert list(embeddings_dir(ws.data_dir, project.id).glob("*")) == []


def test_a_stale_running_job_is_requeued_without_its_files_then_finishes(
    workspace: Workspace, tmp_path: Path
):
    ws = workspace
    project = make_project(ws, tmp_path / "images", settings=FAST)
    job_id = claim_representation(ws.engine, worker="dead:1")
    # As if the worker died while writing: a published file and a temporary one of its claim.
    folder = embeddings_dir(ws.data_dir, project.id)
    folder.mkdir(parents=True)
    half = [folder / f"ssl{job_id}a1-0123456789ab.npz", folder / f".ssl{job_id}a1-x.npz"]
    for path in half:
        path.write_bytes(b"\0" * 10)
    assert reap_stale_representations(ws.engine, timeout_s=30.0, data_dir=ws.data_dir) == []
    with clock.advanced(31):
        assert reap_stale_representations(ws.engine, data_dir=ws.data_dir) == [job_id]
    row = job_row(ws, job_id)
    assert row.status == "queued" and row.worker is None and row.attempts == 1
    assert not any(path.exists() for path in half)
    assert run_queued(ws, worker="alive:2") == "succeeded"
    row = job_row(ws, job_id)
    assert row.attempts == 2 and row.version.startswith(f"ssl{job_id}a2-")
    assert len(project.embeddings()[0]) == 57


def test_a_job_whose_workers_keep_dying_fails_after_max_attempts(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=FAST)
    job_id = project.representation_status().latest.id
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert claim_representation(ws.engine, worker=f"dead:{attempt}") == job_id
        with clock.advanced(31 * attempt):
            assert reap_stale_representations(ws.engine) == [job_id]
    row = job_row(ws, job_id)
    assert row.status == "failed" and f"after {MAX_ATTEMPTS} attempts" in row.error
    # A lead can ask again; the new job is a fresh row.
    assert project.request_representation().id != job_id


def test_rgb_images_of_another_size_get_photo_augmentations(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = ws.create_project("photos", ["a", "b"], settings={**FAST, "backbone": "ssl"})
    folder = tmp_path / "rgb"
    folder.mkdir()
    for seed in range(12):
        (folder / f"p{seed}.png").write_bytes(png_bytes(seed, size=20, mode="RGB"))
    report = project.import_images(folder)
    assert len(report.accepted) == 12 and project.settings.channels == 3
    assert run_queued(ws) == "succeeded"
    done = project.representation_status().current
    assert done.detail["augment"]["horizontal_flip"] is True
    assert done.detail["augment"]["color_jitter"] > 0
    ids, vectors = project.embeddings()
    assert len(ids) == 12 and vectors.shape[0] == 12 and np.isfinite(vectors).all()
    project.update_settings(backbone="hog")  # the default features work on RGB photos too
    project.request_representation()
    assert run_queued(ws) == "succeeded"
    ids, vectors = project.embeddings()
    assert len(ids) == 12 and np.isfinite(vectors).all()


def test_worker_runs_rounds_first_unless_the_learner_reads_embeddings(
    sqlite_workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=FAST)
    job = project.representation_status().latest
    queued_round = project.request_round()
    config = WorkerConfig(url=ws.url, data_dir=ws.data_dir, once=True, round_id=queued_round.id)
    # CNN rounds do not read embeddings: `train --wait`'s in-process worker runs the round only.
    assert run_worker(config) == 1
    assert project.rounds()[-1].status == "succeeded"
    assert job_row(ws, job.id).status == "queued"
    # A round that reads embeddings (here its strategy) gets its project's representation first.
    strategy = project.settings.strategy
    project.update_settings(strategy="typiclust")
    second_round = project.request_round()
    config = WorkerConfig(url=ws.url, data_dir=ws.data_dir, once=True, round_id=second_round.id)
    assert run_worker(config) == 1
    row = job_row(ws, job.id)
    assert row.status == "succeeded"
    assert row.finished_at <= project.rounds()[-1].started_at
    # An idle worker runs a queued representation job when no round is queued.
    project.update_settings(strategy=strategy)
    again = project.request_representation()
    assert run_worker(WorkerConfig(url=ws.url, data_dir=ws.data_dir, once=True)) == 0
    assert job_row(ws, again.id).status == "succeeded"


def test_versions_older_than_the_previous_one_are_pruned(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=FAST, n_test=0)
    versions = []
    for _ in range(3):
        if project.representation_status().latest.status != "queued":
            project.request_representation()
        assert run_queued(ws) == "succeeded"
        versions.append(project.representation_status().version)
    store = EmbeddingStore(embeddings_dir(ws.data_dir, project.id))
    assert store.versions() == sorted(versions[1:])
    assert not encoder_file(ws.data_dir, project.id, versions[0]).exists()
    assert encoder_file(ws.data_dir, project.id, versions[2]).is_file()


def test_features_are_unit_rows_and_fitted_on_the_pool_only(
    monkeypatch: pytest.MonkeyPatch,
):
    """compute_features: changing a non-pool image never changes any pool row's features, and
    computing in chunks gives the same rows."""
    settings = ProjectSettings(image_size=12, channels=1)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 1, 12, 12), dtype=np.uint8)
    pool = np.arange(20) < 15
    first, _ = compute_features(images, pool=pool, settings=settings)
    changed = images.copy()
    changed[~pool] = 255 - changed[~pool]
    second, _ = compute_features(changed, pool=pool, settings=settings)
    np.testing.assert_allclose(first[pool], second[pool], atol=1e-5)
    assert not np.allclose(first[~pool], second[~pool])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    monkeypatch.setattr(features_module, "FEATURE_CHUNK", 7)
    chunked, _ = compute_features(images, pool=pool, settings=settings)
    np.testing.assert_allclose(chunked, first, atol=1e-6)


def test_representation_settings_are_validated(sqlite_workspace: Workspace):
    project = sqlite_workspace.create_project("s", CLASSES)
    assert project.settings.ssl_epochs >= 1 and project.settings.representation_regrow == 0.25
    with pytest.raises(InvalidSetting):
        project.update_settings(ssl_epochs=0)
    with pytest.raises(InvalidSetting):
        project.update_settings(representation_regrow=-0.1)
