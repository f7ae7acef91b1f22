"""Rounds: queue, cancel, reap and list retraining jobs, and start the background worker process
(activelearn.worker) that runs them (services.round_runner)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from activelearn import paths
from activelearn.clock import utcnow
from activelearn.core.learners import load_fitted
from activelearn.errors import ActivelearnError, NotEnoughLabels
from activelearn.services.jobs import DEFAULT_HEARTBEAT_TIMEOUT_S, cancel, reap_stale
from activelearn.services.settings import ProjectSettings
from activelearn.types import RoundInfo, RoundStatus
from db import queries
from db import rounds as round_queries
from db.engine import read_session, with_write_retry
from db.models import Round

if TYPE_CHECKING:
    from activelearn.services.workspace import Project, Workspace

log = logging.getLogger("activelearn.worker")


def worker_name() -> str:
    """This process as a worker: host:pid (a round's `worker` column names its holder)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def stale_message(timeout_s: float) -> str:
    return (
        f"worker stopped responding (no heartbeat for {timeout_s:g} s); labels are safe, "
        "the previous ranking is still served"
    )


def round_info(row: Round) -> RoundInfo:
    return RoundInfo(
        id=row.id,
        status=row.status,
        phase=row.phase,
        progress=float(row.progress or 0.0),
        detail=dict(row.detail or {}),
        n_labels=int(row.n_labels or 0),
        strategy=row.strategy,
        device=row.device,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        finished_at=row.finished_at,
    )


def request_round(
    project: Project,
    *,
    requested_by: str | None = None,
    stale_after_s: float | None = None,
) -> RoundInfo:
    """Queue a round for the project; if one is queued or running already, return that one.

    A running round whose worker stopped heartbeating (stale_after_s, default the worker's
    timeout) is failed first, so a killed worker never blocks the next round even while no
    worker is running to reap it.
    """

    reap_stale_rounds(
        project.engine,
        timeout_s=stale_after_s,
        data_dir=project.workspace.data_dir,
        project_id=project.id,
    )

    def work(session: Session) -> RoundInfo:
        active = round_queries.active_round(session, project.id)
        if active is not None:
            return round_info(active)
        row = queries.get_project_by_id(session, project.id)
        assert row is not None
        check_enough_labels(queries.labeled_pool_classes(session, project.id))
        settings = ProjectSettings.from_json(row.settings)
        created = round_queries.add_round(
            session,
            project_id=project.id,
            strategy=settings.strategy,
            config=settings.to_json(),
            requested_by=requested_by,
            now=utcnow(),
        )
        # Provisional; the worker moves it to the labels it actually trains on.
        created.detail = {"annotation_watermark": queries.max_annotation_id(session, project.id)}
        session.flush()
        return round_info(created)

    try:
        return with_write_retry(project.engine, work)
    except IntegrityError:
        # The one-active-round index caught a concurrent request: return the winner.
        active = active_round(project)
        assert active is not None
        return active


def reap_stale_rounds(
    engine: Engine,
    *,
    timeout_s: float | None = None,
    data_dir: Path | None = None,
    project_id: int | None = None,
) -> list[int]:
    """Mark running rounds (of one project, or all) whose worker stopped heartbeating for
    timeout_s (default: the worker's) as failed; their ids.

    What they wrote (scores, metrics, a half-saved checkpoint under data_dir) is removed.
    """
    timeout = DEFAULT_HEARTBEAT_TIMEOUT_S if timeout_s is None else timeout_s

    def fail(session: Session, older_than: datetime, now: datetime) -> list[int]:
        return round_queries.reap_stale_rounds(
            session,
            older_than=older_than,
            now=now,
            error=stale_message(timeout),
            project_id=project_id,
        )

    reaped = reap_stale(engine, Round, timeout_s=timeout, project_id=project_id, reap=fail)
    for round_id in reaped:
        log.warning("round %s failed: %s", round_id, stale_message(timeout))
    discard_outputs(engine, reaped, data_dir=data_dir)
    return reaped


def discard_outputs(engine: Engine, round_ids: list[int], *, data_dir: Path | None) -> None:
    """Delete what dead rounds wrote; they are never served, so it is only clutter."""
    for round_id in round_ids:
        with_write_retry(engine, lambda s, r=round_id: round_queries.delete_round_outputs(s, r))
        _remove_checkpoints(data_dir, round_id)


def _remove_checkpoints(data_dir: Path | None, round_id: int) -> None:
    if data_dir is not None:
        for folder in paths.round_checkpoint_dirs(Path(data_dir), round_id):
            shutil.rmtree(folder, ignore_errors=True)


# Succeeded rounds that keep their per-sample scores and checkpoint. With a round after every
# label, keeping them all would grow the database by a pool's worth of rows per label (17.5 MB
# per round at 100,000 samples) and the disk by a checkpoint per label (117 MB at 100,000 for
# the embedding learner, which keeps the pool's vectors for its graph vote). Older rounds keep
# their metrics, training curves and stored pool summary: the dashboard's learning curves and
# distributions over rounds stay whole. Three: the newest is served, its predecessor feeds the
# newest's stability and summary, and one more covers a round finishing meanwhile.
KEPT_ROUND_OUTPUTS = 3
PRUNE_CHUNK_ROWS = 1_000  # score rows deleted per write transaction: labels interleave


def prune_old_rounds(
    engine: Engine, project_id: int, *, data_dir: Path | None, keep: int = KEPT_ROUND_OUTPUTS
) -> list[int]:
    """Remove the per-sample scores and checkpoints of the project's succeeded rounds older
    than the newest `keep`; returns the rounds pruned."""
    with read_session(engine) as session:
        pruned = round_queries.rounds_to_prune(session, project_id, keep=keep)
    for round_id in pruned:
        while with_write_retry(
            engine,
            lambda s, r=round_id: round_queries.delete_some_scores(s, r, limit=PRUNE_CHUNK_ROWS),
        ):
            pass
        with_write_retry(engine, lambda s, r=round_id: round_queries.forget_checkpoint(s, r))
        _remove_checkpoints(data_dir, round_id)
    return pruned


def cancel_round(project: Project, round_id: int | None = None) -> RoundInfo | None:
    return cancel(
        project.engine,
        Round,
        project.id,
        round_id,
        active=round_queries.active_round,
        info=round_info,
    )


def list_rounds(project: Project) -> list[RoundInfo]:
    with read_session(project.engine) as session:
        return [round_info(row) for row in round_queries.list_rounds(session, project.id)]


def active_round(project: Project) -> RoundInfo | None:
    with read_session(project.engine) as session:
        row = round_queries.active_round(session, project.id)
        return round_info(row) if row is not None else None


def last_round(project: Project) -> RoundInfo | None:
    """The project's newest round, whatever its status (an active one is always the newest)."""
    with read_session(project.engine) as session:
        row = round_queries.latest_round(session, project.id)
        return round_info(row) if row is not None else None


MIN_CLASSES_FOR_ROUND = 2
APP_WORKER_NICENESS = 10  # the worker the app starts runs at this nice value (0 = the app's)
# After a failed round the next automatic one waits for at least this many new labels: with
# retrain_every 1 a round that keeps failing (a missing file, a bad setting) would otherwise be
# retried, and fail again, after every label.
FAILED_ROUND_BACKOFF_LABELS = 20


def check_enough_labels(labeled_classes: list[str]) -> None:
    """A round replaces the cold-start order only when its labels show at least two classes:
    on one class (or one label) every member predicts that class with confidence ~1 and the
    ranking says nothing. Raises NotEnoughLabels with what is missing."""
    if len(labeled_classes) >= MIN_CLASSES_FOR_ROUND:
        return
    if not labeled_classes:
        raise NotEnoughLabels(
            "there are no labeled pool images to train on yet: label some first "
            f"(a round needs labels of at least {MIN_CLASSES_FOR_ROUND} classes)"
        )
    raise NotEnoughLabels(
        f"a round needs labels of at least {MIN_CLASSES_FOR_ROUND} classes; so far every label "
        f"is {labeled_classes[0]!r}: label more before retraining (the cold-start order stays)"
    )


def maybe_request_round(project: Project) -> RoundInfo | None:
    """Queue a round when retrain_every new labels have come in since the last round's snapshot.

    Runs after every label, so it stays cheap: one read transaction of three indexed queries,
    and a write only when a round is due.
    """
    with read_session(project.engine) as session:
        row = queries.get_project_by_id(session, project.id)
        if row is None:
            return None
        every = ProjectSettings.from_json(row.settings).retrain_every
        if every <= 0 or round_queries.active_round(session, project.id) is not None:
            return None
        last = round_queries.latest_round(session, project.id)
        # Any last round counts, failed ones too: a failing round must not be re-queued per label.
        watermark = int((last.detail or {}).get("annotation_watermark", 0)) if last else 0
        if last is not None and last.status == RoundStatus.FAILED:
            every = max(every, FAILED_ROUND_BACKOFF_LABELS)
        new_labels = queries.count_live_annotations(session, project.id, since_id=watermark)
        classes = queries.labeled_pool_classes(session, project.id)
    if new_labels < every or len(classes) < MIN_CLASSES_FOR_ROUND:
        return None
    return request_round(project, requested_by="auto")


# ---------------------------------------------------------------- the background worker

_started: dict[str, subprocess.Popen[bytes]] = {}  # data dir -> the worker this process started
_start_lock = threading.Lock()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    return True


def worker_alive(workspace: Workspace) -> bool:
    """Whether a worker for this data folder is running (pid file + a live process)."""
    key = str(Path(workspace.data_dir).resolve())
    child = _started.get(key)
    if child is not None and child.poll() is not None:
        _started.pop(key, None)  # our child exited (and is now reaped, not a zombie)
    try:
        pid = int(paths.pid_file(Path(workspace.data_dir)).read_text().strip())
    except (OSError, ValueError):
        return child is not None and child.poll() is None
    if child is not None and child.pid == pid:
        return child.poll() is None
    return _pid_alive(pid)


def ensure_worker(workspace: Workspace, *, idle_exit_s: float | None = 900.0) -> bool:
    """Start a detached background worker unless one is alive; True when one was started.

    The worker outlives a Streamlit rerun (its own session), logs to data_dir/worker.log, and
    exits after idle_exit_s without work (the app starts a new one when a round is requested).
    """
    with _start_lock:
        if worker_alive(workspace):
            return False
        data_dir = Path(workspace.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "activelearn.worker",
            "--db",
            workspace.url,
            "--data-dir",
            str(data_dir),
        ]
        if idle_exit_s is not None:
            command += ["--idle-exit", str(idle_exit_s)]
        # Below the app's priority: on a small machine the annotator's next image must not wait
        # for the CPU behind a round (benchmarks/README.md, label latency).
        command += ["--nice", str(APP_WORKER_NICENESS)]
        root = Path(__file__).resolve().parents[2]  # so `-m activelearn.worker` resolves
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        with open(paths.log_file(data_dir), "ab") as log_file:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        _started[str(data_dir.resolve())] = child
        # The pid file is the worker's own to write; until it does, remember the child here.
        return True


def wait_for_round(
    project: Project,
    round_id: int,
    *,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    on_update: Callable[[RoundInfo], None] | None = None,
) -> RoundInfo:
    """Poll a round until it is no longer queued or running (or the timeout passes)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        with read_session(project.engine) as session:
            row = round_queries.get_round(session, round_id)
            if row is None:
                raise ActivelearnError(f"round {round_id} does not exist")
            info = round_info(row)
        if on_update is not None:
            on_update(info)
        if not RoundStatus(info.status).active:
            return info
        if deadline is not None and time.monotonic() > deadline:
            return info
        time.sleep(poll_s)


# ---------------------------------------------------------------- checkpoints and predictions


def load_ensemble(project: Project, round_id: int | None = None, *, device: str = "cpu") -> Any:
    """The saved ensemble of a succeeded round (default: the one being served), or None.

    Loaded from safetensors + JSON, never pickle, so the app restarts without retraining.
    """
    with read_session(project.engine) as session:
        if round_id is None:
            round_id = queries.latest_succeeded_round_id(session, project.id)
        row = round_queries.get_round(session, round_id) if round_id is not None else None
        if row is None or row.project_id != project.id or not row.checkpoint:
            return None
        checkpoint = row.checkpoint
    if not Path(checkpoint).is_dir():
        return None
    return load_fitted(checkpoint, device=device)
