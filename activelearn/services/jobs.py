"""What the two kinds of background job share: training rounds (services.rounds,
services.round_runner) and representation jobs (services.representation,
services.representation_runner).

A job is cancelled by `cancel`. A claimed job is heartbeated by a JobMonitor thread (liveness,
the latest progress, cancel requests), flipped to succeeded in one transaction
(`finish_succeeded`), or marked cancelled or failed with a one-line reason
(`finish_unsuccessful`, `one_line`). A job whose worker stopped heartbeating is found by
`reap_stale`; what then becomes of it is the kind's own choice (a round fails, a representation
job goes back in the queue up to three claims).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from activelearn.clock import utcnow
from activelearn.types import RoundStatus
from db import jobs as job_queries
from db.engine import read_session, with_write_retry
from db.jobs import JobModel

log = logging.getLogger("activelearn.worker")
HEARTBEAT_S = 1.0  # progress and liveness writes; the reaper allows 30 s of silence
DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0  # a running job silent this long is reaped
T = TypeVar("T")
Info = TypeVar("Info")  # what a caller makes of a job's row


class JobMonitor:
    """Heartbeat thread of a running job: writes the latest phase, progress and detail (when
    they changed) with the heartbeat every `interval` seconds, so the UI sees progress even
    inside a long epoch, and picks up cancel requests. The training thread's progress calls
    (`update`, in the subclasses) raise the kind's cancelled or lost exception once the monitor
    has seen either.
    """

    model: ClassVar[JobModel]
    noun: ClassVar[str]  # the job in messages and logs
    cancelled_error: ClassVar[type[Exception]]
    lost_error: ClassVar[type[Exception]]
    thread_prefix: ClassVar[str] = "heartbeat"

    def __init__(self, engine: Engine, job_id: int, *, worker: str, interval: float) -> None:
        self.engine = engine
        self.job_id = job_id
        self.worker = worker
        self.interval = interval
        self._lock = threading.Lock()
        # What the next beat writes while _dirty; guarded by _lock.
        self._phase: str | None = None
        self._progress: float | None = None
        self._detail: dict[str, Any] = {}
        self._dirty = False
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"{self.thread_prefix}-{job_id}", daemon=True
        )

    def start(self) -> JobMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def detail(self) -> dict[str, Any]:
        with self._lock:
            return self._written_detail()

    def _written_detail(self) -> dict[str, Any]:
        """The detail a beat writes (called with the lock held)."""
        return dict(self._detail)

    def check(self) -> None:
        if self.lost.is_set():
            raise self.lost_error(f"{self.noun} {self.job_id} is no longer held by this worker")
        if self.cancelled.is_set():
            raise self.cancelled_error(f"{self.noun} {self.job_id} was cancelled")

    def should_stop(self) -> bool:
        """For a training loop that checks a flag before every step instead of calling check."""
        return self.lost.is_set() or self.cancelled.is_set()

    def beat(self) -> None:
        """One heartbeat write (also called directly by the worker between phases)."""
        with self._lock:
            dirty = self._dirty
            phase = self._phase if dirty else None
            progress = round(self._progress, 4) if dirty and self._progress is not None else None
            detail = self._written_detail() if dirty else None
            self._dirty = False
        ours, cancel = with_write_retry(
            self.engine,
            lambda s: job_queries.heartbeat(
                s,
                self.model,
                self.job_id,
                worker=self.worker,
                now=utcnow(),
                phase=phase,
                progress=progress,
                detail=detail,
            ),
        )
        if not ours:
            self.lost.set()
        if cancel:
            self.cancelled.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a missed beat is retried next interval; the reaper allows 30 s
                log.exception("heartbeat of %s %s failed", self.noun, self.job_id)


def one_line(error: BaseException, *, plain: tuple[type[BaseException], ...] = ()) -> str:
    """A job's failure as the one line its row shows: "Type: first line" (at most 500
    characters), or the first line alone for the `plain` errors, which are written to be read.
    """
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    message = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if isinstance(error, plain):
        message = text
    return message[:500]


def cancel(
    engine: Engine,
    model: JobModel,
    project_id: int,
    job_id: int | None,
    *,
    active: Callable[[Session, int], Any],
    info: Callable[[Any], Info],
) -> Info | None:
    """Cancel the project's active job (`active` finds it) or job `job_id` when it is the
    project's: a queued one at once, a running one when its worker next looks. The job after
    (`info` of its row, read in the same transaction), or None when there is none."""

    def work(session: Session) -> Info | None:
        if job_id is None:
            row = active(session, project_id)
        else:
            row = session.get(model, job_id)
            if row is not None and row.project_id != project_id:
                row = None
        if row is None:
            return None
        job_queries.request_cancel(session, model, row.id, utcnow())
        session.refresh(row)
        return info(row)

    return with_write_retry(engine, work)


def finish_succeeded(
    session: Session, model: JobModel, job_id: int, *, worker: str, **values: Any
) -> str:
    """The success flip, in the caller's write transaction: "lost" when the job is no longer
    this worker's running one; "cancelled" when a cancel request came in meanwhile (the caller's
    cancel handling marks it); else the job is marked succeeded with `values` (progress 1, a
    last heartbeat), readers switch to what it made from this commit on: "succeeded"."""
    row = session.get(model, job_id)
    if row is None or row.status != RoundStatus.RUNNING or row.worker != worker:
        return "lost"
    if row.cancel_requested:
        return RoundStatus.CANCELLED
    job_queries.finish(
        session,
        model,
        job_id,
        worker=worker,
        status=RoundStatus.SUCCEEDED,
        now=utcnow(),
        progress=1.0,
        heartbeat_at=utcnow(),
        **values,
    )
    return RoundStatus.SUCCEEDED


def finish_unsuccessful(
    engine: Engine, model: JobModel, job_id: int, *, noun: str, worker: str, status: str, error: str
) -> None:
    """Mark this worker's running job `status` (cancelled or failed) with `error`; a failure to
    do so is logged only (the job is then reaped as stale)."""
    try:
        with_write_retry(
            engine,
            lambda s: job_queries.finish(
                s, model, job_id, worker=worker, status=status, now=utcnow(), error=error
            ),
        )
    except Exception:
        log.exception("could not mark %s %s %s", noun, job_id, status)


def reap_stale(
    engine: Engine,
    model: JobModel,
    *,
    timeout_s: float,
    project_id: int | None,
    reap: Callable[[Session, datetime, datetime], list[T]],
) -> list[T]:
    """The reapers' common part: when a running job of `model` (of one project, when given) has
    not heartbeated for timeout_s, one write transaction runs `reap(session, older_than, now)`,
    which ends those jobs its kind's way and says which; [] when there are none."""
    with read_session(engine) as session:
        # A read first: the write lock (which annotators' labels queue for) only when needed.
        older_than = utcnow() - timedelta(seconds=timeout_s)
        if not job_queries.stale(session, model, older_than=older_than, project_id=project_id):
            return []

    def work(session: Session) -> list[T]:
        now = utcnow()
        return reap(session, now - timedelta(seconds=timeout_s), now)

    return with_write_retry(engine, work)
