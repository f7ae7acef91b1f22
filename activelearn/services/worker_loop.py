"""The background worker's loop: reap stale rounds and representation jobs, claim a queued one,
run it, repeat.

Order: a project's representation job before its rounds when those rounds read the embeddings
(the learner says so); otherwise rounds first (a CNN round need not wait minutes for an encoder
it does not use) and representation jobs when no round is queued.

The process entry point is activelearn.worker (`python -m activelearn.worker`, which nothing
imports); `activelearn worker` and `activelearn train --wait` run this same loop. A worker serves
every project of its database. Training runs in the main thread; a second thread heartbeats
(services.round_runner.RoundMonitor).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from activelearn import paths
from activelearn.services.dashboard import backfill_pool_summaries
from activelearn.services.representation import reap_stale_representations
from activelearn.services.representation_runner import claim_representation, run_representation
from activelearn.services.round_runner import claim_round, run_round
from activelearn.services.rounds import (
    DEFAULT_HEARTBEAT_TIMEOUT_S,
    maybe_request_round,
    reap_stale_rounds,
    worker_name,
)
from activelearn.services.workspace import Workspace, check_database_exists, resolve_data_dir
from db import rounds as round_queries
from db.engine import default_url, read_session

log = logging.getLogger("activelearn.worker")


@dataclass(frozen=True)
class WorkerConfig:
    url: str
    data_dir: Path
    # Run at most one round, then exit (also when nothing is queued); representation jobs met
    # on the way are run too and do not count.
    once: bool = False
    poll_s: float = 1.0
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S
    idle_exit_s: float | None = None  # exit after this long with nothing to do
    device: str = "auto"
    # Claim only this round (`activelearn train --wait`), after its project's representation job
    # when the round reads embeddings; no other project's work.
    round_id: int | None = None


def run_worker(config: WorkerConfig) -> int:
    """The worker loop; returns the number of rounds it ran."""
    workspace = Workspace(config.url, data_dir=config.data_dir, create=False)
    name = worker_name()
    ran = 0
    idle_since = time.monotonic()
    log.info("worker %s serving %s", name, _safe_url(config.url))
    _backfill_summaries(workspace.engine)
    only_project = _project_of_round(workspace.engine, config.round_id)
    try:
        while True:
            reap_stale_rounds(
                workspace.engine,
                timeout_s=config.heartbeat_timeout_s,
                data_dir=workspace.data_dir,
            )
            reap_stale_representations(
                workspace.engine,
                timeout_s=config.heartbeat_timeout_s,
                data_dir=workspace.data_dir,
            )
            if _run_one_representation(workspace, name, config, only_project, before_rounds=True):
                idle_since = time.monotonic()
                continue
            round_id = claim_round(workspace.engine, worker=name, round_id=config.round_id)
            if (
                round_id is None
                and config.round_id is None
                and _run_one_representation(workspace, name, config, None, before_rounds=False)
            ):
                idle_since = time.monotonic()
                continue
            if round_id is None:
                if config.once:
                    return ran
                if (
                    config.idle_exit_s is not None
                    and time.monotonic() - idle_since > config.idle_exit_s
                ):
                    log.info("idle for %.0f s: exiting", config.idle_exit_s)
                    return ran
                time.sleep(config.poll_s)
                continue
            log.info("claimed round %s", round_id)
            status = run_round(
                workspace.engine,
                round_id,
                data_dir=workspace.data_dir,
                worker=name,
                device=config.device,
            )
            log.info("round %s %s", round_id, status)
            ran += 1
            idle_since = time.monotonic()
            if config.once:
                return ran
            _queue_follow_up(workspace, round_id)
    finally:
        workspace.close()


def _queue_follow_up(workspace: Workspace, round_id: int) -> None:
    """Labels given while a round ran queue no round of their own (one was active): queue the
    next one now if they are due, so the last labels of a session are not left out."""
    project_id = _project_of_round(workspace.engine, round_id)
    project = next((p for p in workspace.projects() if p.id == project_id), None)
    if project is None:
        return
    try:
        maybe_request_round(project)
    except Exception:
        log.exception("could not queue the follow-up round of project %s", project.name)


def _project_of_round(engine: Engine, round_id: int | None) -> int | None:
    if round_id is None:
        return None
    with read_session(engine) as session:
        row = round_queries.get_round(session, round_id)
        return row.project_id if row is not None else None


def _run_one_representation(
    workspace: Workspace,
    name: str,
    config: WorkerConfig,
    project_id: int | None,
    *,
    before_rounds: bool,
) -> bool:
    """Claim and run one queued representation job (see the module's order); False if none."""
    job_id = claim_representation(
        workspace.engine, worker=name, project_id=project_id, before_rounds=before_rounds
    )
    if job_id is None:
        return False
    log.info("claimed representation job %s", job_id)
    status = run_representation(
        workspace.engine, job_id, data_dir=workspace.data_dir, worker=name, device=config.device
    )
    log.info("representation job %s %s", job_id, status)
    return True


def _backfill_summaries(engine: Engine) -> None:

    try:
        stored = backfill_pool_summaries(engine)
    except Exception:  # only the dashboard's first visitor pays for a missing summary
        log.exception("could not backfill the dashboard pool summaries")
        return
    if stored:
        log.info("stored the dashboard pool summaries of rounds %s", stored)


def _safe_url(url: str) -> str:

    return make_url(url).render_as_string(hide_password=True)


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    # Turned into SystemExit so that a running round is marked failed before the process ends.
    raise SystemExit(128 + signum)


def default_threads() -> int:
    """One core fewer than the machine has (at least one): the UI keeps a core to itself.

    Measured on the 2-core dev machine under load: a 2-thread fit took 37 s where a 1-thread fit
    took 0.9 s (OpenMP threads spin against the other processes), so never oversubscribe.
    """
    return max(1, (os.cpu_count() or 1) - 1)


def set_threads(threads: int | None) -> int:
    import torch  # the CLI's other commands start without torch

    count = threads if threads and threads > 0 else default_threads()
    torch.set_num_threads(count)
    return count


def write_pid_file(data_dir: Path) -> Path:
    path = paths.pid_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    return path


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point shared by `activelearn worker` and `python -m activelearn.worker`."""
    data_dir_arg = Path(args.data_dir) if args.data_dir else None
    url = args.db or default_url(data_dir_arg)
    data_dir = resolve_data_dir(url, data_dir_arg)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    check_database_exists(url, given=bool(args.db))  # before the pid file: nothing left behind
    signal.signal(signal.SIGTERM, _raise_exit)
    if getattr(args, "nice", 0):
        os.nice(int(args.nice))
    set_threads(args.threads)
    pid_file = write_pid_file(data_dir)
    try:
        run_worker(
            WorkerConfig(
                url=url,
                data_dir=data_dir,
                once=args.once,
                poll_s=args.poll,
                heartbeat_timeout_s=args.heartbeat_timeout,
                idle_exit_s=args.idle_exit,
                device=args.device,
            )
        )
    except KeyboardInterrupt:
        return 130
    finally:
        # Only our own pid file: another worker may have replaced it meanwhile.
        with suppress(OSError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
    return 0
