"""The representation stage in real worker processes: SIGKILL mid-training, then a new worker
reaps the job, puts it back in the queue and finishes it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from activelearn import Workspace
from activelearn.clock import utcnow
from activelearn.paths import embeddings_dir
from db.engine import sqlite_integrity_check
from tests.processes import start_worker, wait_for
from tests.services.test_representation import job_row
from tests.services.test_rounds import make_project

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A job that trains for minutes (SSL encoder): long enough to cancel or kill mid-way.
SLOW = {"ssl_epochs": 1000, "backbone": "ssl"}


@pytest.mark.slow
def test_sigkill_mid_job_then_a_new_worker_finishes_it(sqlite_workspace: Workspace, tmp_path: Path):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=SLOW)
    job = project.representation_status().latest
    assert job is not None and job.status == "queued"
    worker = start_worker(ws)
    try:
        # Progress is written while training: epoch, loss, images/s; the heartbeat advances.
        row = wait_for(
            lambda: (
                (r := job_row(ws, job.id)).status == "running"
                and r.detail.get("epoch", 0) >= 1
                and r
            ),
            timeout=120,
            what="the job to train",
        )
        assert row.phase == "training" and row.detail["epochs"] == 1000
        assert row.detail["n_images"] == 42 and "loss" in row.detail
        beat = row.heartbeat_at
        wait_for(lambda: job_row(ws, job.id).heartbeat_at > beat, timeout=10)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    killed = job_row(ws, job.id)
    assert killed.status == "running" and killed.attempts == 1  # nobody has noticed yet
    # As if the kill had landed while writing: a temporary and a published file of its claim.
    folder = embeddings_dir(ws.data_dir, project.id)
    folder.mkdir(parents=True, exist_ok=True)
    half = [folder / f".ssl{job.id}a1-partial.npz", folder / f"ssl{job.id}a1-0123456789ab.npz"]
    for path in half:
        path.write_bytes(b"\0" * 100)
    project.update_settings(ssl_epochs=1)  # the next claim reads the settings afresh
    # The new worker's reaper allows 1 s of silence: let the dead worker's last beat age first.
    wait_for(lambda: (utcnow() - job_row(ws, job.id).heartbeat_at).total_seconds() > 1.5)
    again = start_worker(ws, "--once", "--heartbeat-timeout", "1")
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output.decode()
    done = job_row(ws, job.id)
    assert done.status == "succeeded", (done.error, output.decode())
    assert done.attempts == 2 and done.worker.endswith(f":{again.pid}")
    assert done.version.startswith(f"ssl{job.id}a2-")
    assert not any(path.exists() for path in half)
    ids, vectors = project.embeddings()
    assert len(ids) == 57 and vectors.shape[0] == 57  # pool and test, each embedded once
    assert sqlite_integrity_check(ws.engine) == "ok"


@pytest.mark.slow
def test_a_stopped_worker_puts_its_job_back_in_the_queue(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=SLOW)
    job = project.representation_status().latest
    worker = start_worker(ws)
    try:
        wait_for(lambda: job_row(ws, job.id).detail.get("epoch", 0) >= 1, timeout=120)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    row = job_row(ws, job.id)
    assert row.status == "queued" and row.worker is None, output.decode()
    assert row.detail == {"requeued": "the worker was stopped"} and row.attempts == 1
    assert list(embeddings_dir(ws.data_dir, project.id).glob("*")) == []
