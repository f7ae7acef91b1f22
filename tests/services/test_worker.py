"""The background worker as a real process: a full round, SIGKILL mid-round, cancellation."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from activelearn import Workspace, clock
from activelearn.services import rounds
from activelearn.services.round_runner import claim_round
from activelearn.services.rounds import reap_stale_rounds
from db import rounds as round_queries
from db.engine import read_session, sqlite_integrity_check
from db.models import SampleScore
from tests.processes import round_row, start_worker, wait_for
from tests.services.test_rounds import make_project, run_one

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LONG = {"epochs": 1000}  # long enough to be caught mid-training


def live_labels(project) -> list[tuple]:
    frame = project.labels()
    return sorted(zip(frame["sample_id"], frame["label"], strict=True))


@pytest.mark.slow
def test_worker_process_runs_a_round_and_the_ranking_changes(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images")
    cold = [project.next_task(f"a{i}").sample_id for i in range(3)]
    for i in range(3):
        project.release(project.next_task(f"a{i}").id, annotator=f"a{i}")
    queued = project.request_round()
    worker = start_worker(ws, "--once")
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output.decode()
    done = round_row(ws, queued.id)
    assert done.status == "succeeded", (done.error, output.decode())
    assert done.worker and done.worker.endswith(f":{worker.pid}")
    with read_session(ws.engine) as session:
        ranking = round_queries.ranking(session, done.id, limit=3)
    served = [project.next_task(f"b{i}") for i in range(3)]
    assert [t.sample_id for t in served] == ranking
    assert all(t.strategy == "bald" and t.round_id == done.id for t in served)
    assert ranking != cold
    assert not (ws.data_dir / "worker.pid").exists()  # removed on a clean exit


@pytest.mark.slow
def test_sigkill_mid_round_is_reaped_labels_intact_previous_ranking_served(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images")
    first = project.request_round()
    assert run_one(ws, project) == "succeeded"
    with read_session(ws.engine) as session:
        first_ranking = round_queries.ranking(session, first.id, limit=2)
    task = project.next_task("ana")
    project.submit(task.id, label="left", annotator="ana")
    labels_before = live_labels(project)

    project.update_settings(**LONG)
    doomed = project.request_round()
    worker = start_worker(ws)
    try:
        # Progress is written while training: epoch and loss appear, the heartbeat advances.
        row = wait_for(
            lambda: (
                (r := round_row(ws, doomed.id)).status == "running"
                and "epoch" in (r.detail or {})
                and r
            )
        )
        assert row.phase == "training" and row.detail["epochs"] == 1000
        beat = row.heartbeat_at
        wait_for(lambda: round_row(ws, doomed.id).heartbeat_at > beat, timeout=10)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert round_row(ws, doomed.id).status == "running"  # nobody has noticed yet
    # As if the kill had landed while saving: a half-written checkpoint folder.
    half_saved = ws.data_dir / "checkpoints" / f"project-{project.id}" / f"round-{doomed.id}"
    half_saved.mkdir(parents=True)
    (half_saved / "model.safetensors").write_bytes(b"\0" * 100)
    kept = Path(round_row(ws, first.id).checkpoint)
    with clock.advanced(1.2):  # the heartbeat is now 1.2 s older than the 1 s timeout
        assert reap_stale_rounds(ws.engine, timeout_s=1.0, data_dir=ws.data_dir) == [doomed.id]
    assert not half_saved.exists() and (kept / "model.safetensors").is_file()
    failed = round_row(ws, doomed.id)
    assert failed.status == "failed" and "no heartbeat" in failed.error
    assert "labels are safe" in failed.error and failed.finished_at is not None
    assert sqlite_integrity_check(ws.engine) == "ok"
    assert live_labels(project) == labels_before
    with read_session(ws.engine) as session:
        assert not list(
            session.scalars(SampleScore.__table__.select().where(SampleScore.round_id == doomed.id))
        )
    # The previous round's ranking is still the one served.
    assert project.status().current_round_id == first.id
    served = project.next_task("bo")
    assert served.round_id == first.id and served.sample_id in first_ranking
    project.release(served.id, annotator="bo")
    # And the next round runs.
    project.update_settings(epochs=2)
    following = project.request_round()
    assert following.id != doomed.id and following.status == "queued"
    assert run_one(ws, project) == "succeeded"
    assert project.status().current_round_id == following.id


@pytest.mark.slow
def test_cancel_a_running_round(sqlite_workspace: Workspace, tmp_path: Path):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=LONG)
    queued = project.request_round()
    worker = start_worker(ws, "--once")
    try:
        wait_for(lambda: round_row(ws, queued.id).phase == "training")
        info = project.cancel_round()
        assert info is not None and info.id == queued.id
        output, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    cancelled = round_row(ws, queued.id)
    assert cancelled.status == "cancelled", output.decode()
    assert cancelled.error == "cancelled by request"
    assert project.active_round() is None
    assert project.status().current_round_id is None
    assert project.next_task("ana").strategy == "cold_start"
    assert not (
        ws.data_dir / "checkpoints" / f"project-{project.id}" / f"round-{queued.id}"
    ).exists()


def test_cancel_a_queued_round_and_claims_are_exclusive(workspace: Workspace, tmp_path: Path):
    ws = workspace
    project = make_project(ws, tmp_path / "images", n_labeled=1, n_open=1, n_test=0)
    queued = project.request_round()
    assert project.cancel_round(queued.id).status == "cancelled"
    assert claim_round(ws.engine, worker="w:1") is None
    again = project.request_round()
    assert again.id != queued.id
    winners: list[int | None] = []
    threads = [
        threading.Thread(target=lambda i=i: winners.append(claim_round(ws.engine, worker=f"w:{i}")))
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(w for w in winners if w is not None) == [again.id]
    assert round_row(ws, again.id).status == "running"


@pytest.mark.slow
def test_ensure_worker_starts_one_background_worker(sqlite_workspace: Workspace, tmp_path: Path):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images")
    queued = project.request_round()
    assert rounds.ensure_worker(ws, idle_exit_s=1.0) is True
    assert rounds.ensure_worker(ws, idle_exit_s=1.0) is False  # one is alive already
    # It runs below the app's CPU priority, so that labeling stays responsive.
    pid_file = ws.data_dir / "worker.pid"
    wait_for(pid_file.exists, timeout=60)
    pid = int(pid_file.read_text().split()[0])
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(19, mine + rounds.APP_WORKER_NICENESS)  # 19 is the lowest priority
    wait_for(lambda: os.getpriority(os.PRIO_PROCESS, pid) == wanted)
    done = rounds.wait_for_round(project, queued.id, timeout_s=120, poll_s=0.2)
    assert done.status == "succeeded", done.error
    wait_for(lambda: not rounds.worker_alive(ws), timeout=60)
    assert "claimed round" in (ws.data_dir / "worker.log").read_text()


@pytest.mark.slow
def test_labels_given_while_a_round_trains_count_toward_the_next(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings=LONG)
    queued = project.request_round()
    worker = start_worker(ws, "--once")
    try:
        wait_for(lambda: round_row(ws, queued.id).phase == "training")
        started = time.monotonic()
        for _ in range(3):
            task = project.next_task("dee")
            project.submit(task.id, label="top", annotator="dee")
        # Label writes are never held up by the round (it writes in short transactions).
        assert time.monotonic() - started < 5.0
        output, _ = worker.communicate(timeout=300)
    finally:
        if worker.poll() is None:
            worker.kill()
    done = round_row(ws, queued.id)
    assert done.status == "succeeded", (done.error, output.decode())
    assert done.n_labels == 4 * 3  # the imported labels only
    status = project.status()
    assert status.current_round_id == queued.id and status.labels_since_round == 3
    assert status.n_labeled == 4 * 3 + 3


def test_cli_train_wait_runs_the_round_when_no_worker_is_running(
    sqlite_workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from activelearn.cli import main

    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images")
    argv = ["--db", ws.url, "--data-dir", str(ws.data_dir), "--project", project.name]
    assert main(["train", *argv, "--wait"]) == 0
    printed = capsys.readouterr().out
    assert "succeeded on 12 labels" in printed
    assert project.rounds()[-1].status == "succeeded"
    assert main(["train", *argv]) == 0  # queues only, and says that no worker runs it
    assert "no worker is running" in capsys.readouterr().out
    assert project.active_round().status == "queued"


def test_cli_train_wait_runs_its_own_round_not_an_older_one_of_another_project(
    sqlite_workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from activelearn.cli import main

    ws = sqlite_workspace
    other = make_project(ws, tmp_path / "other", name="other")
    older = other.request_round()  # queued first, never picked up by a worker
    project = make_project(ws, tmp_path / "images")
    argv = ["--db", ws.url, "--data-dir", str(ws.data_dir), "--project", project.name]
    assert main(["train", *argv, "--wait", "--timeout", "120"]) == 0
    assert "succeeded on 12 labels" in capsys.readouterr().out
    assert project.rounds()[-1].status == "succeeded"
    assert round_row(ws, older.id).status == "queued"


def test_request_round_fails_a_stale_running_round_instead_of_returning_it(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", n_labeled=1, n_open=1, n_test=0)
    dead = project.request_round()
    assert claim_round(ws.engine, worker="gone:1") == dead.id
    assert project.request_round().id == dead.id  # fresh heartbeat: still the active one
    leftover = ws.data_dir / "checkpoints" / f"project-{project.id}" / f"round-{dead.id}"
    leftover.mkdir(parents=True)
    with clock.advanced(1.1):  # the heartbeat is now older than the 1 s timeout
        queued = rounds.request_round(project, stale_after_s=1.0)
    assert queued.id != dead.id and queued.status == "queued"
    failed = round_row(ws, dead.id)
    assert failed.status == "failed" and "no heartbeat for 1 s" in failed.error
    assert not leftover.exists()
