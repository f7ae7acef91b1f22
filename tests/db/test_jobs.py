"""db.jobs, the job mechanism both kinds share, on both tables: claims are exclusive (of racing
workers exactly one wins), heartbeats say whether the job is still ours and whether a cancel
came in, cancel, finish and the stale listing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from activelearn import Workspace
from activelearn.clock import utcnow
from db import jobs, queries
from db import representations as rep_queries
from db import rounds as round_queries
from db.engine import read_session, with_write_retry
from db.jobs import JobModel
from db.models import Representation, Round

WORKERS = 6


def _add_round(session: Session, project_id: int) -> int:
    return round_queries.add_round(
        session,
        project_id=project_id,
        strategy="margin",
        config={},
        requested_by=None,
        now=utcnow(),
    ).id


def _add_representation(session: Session, project_id: int) -> int:
    return rep_queries.add_representation(
        session, project_id=project_id, requested_by=None, now=utcnow()
    ).id


def _claim_round(session: Session, worker: str) -> int | None:
    return round_queries.claim_next_round(session, worker=worker, now=utcnow())


def _claim_representation(session: Session, worker: str) -> int | None:
    return rep_queries.claim_representation(session, worker=worker, now=utcnow())


# (model, add a queued job of a project, claim the oldest queued job for a worker)
KINDS = [
    pytest.param(Round, _add_round, _claim_round, id="round"),
    pytest.param(Representation, _add_representation, _claim_representation, id="representation"),
]
Adder = Callable[[Session, int], int]
Claimer = Callable[[Session, str], "int | None"]


def _queue(ws: Workspace, add: Adder, n_projects: int) -> list[int]:
    """One queued job in each of n new projects (a project holds one active job at most)."""

    def work(session: Session) -> list[int]:
        ids = []
        for index in range(n_projects):
            project = queries.add_project(
                session, name=f"p{index}", classes=["a", "b"], settings={}, now=utcnow()
            )
            ids.append(add(session, project.id))
        return ids

    return with_write_retry(ws.engine, work)


def _row(ws: Workspace, model: JobModel, job_id: int) -> Any:
    with read_session(ws.engine) as session:
        row = session.get(model, job_id)
        assert row is not None
        return row


@pytest.mark.parametrize(("model", "add", "claim"), KINDS)
def test_of_racing_claims_exactly_one_wins(
    workspace: Workspace, model: JobModel, add: Adder, claim: Claimer
) -> None:
    (job_id,) = _queue(workspace, add, 1)
    barrier = threading.Barrier(WORKERS)
    won: list[int | None] = []
    errors: list[BaseException] = []

    def race(worker: str) -> None:
        try:
            barrier.wait()
            won.append(with_write_retry(workspace.engine, lambda s: claim(s, worker)))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=race, args=(f"w:{i}",)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(w for w in won if w is not None) == [job_id]
    row = _row(workspace, model, job_id)
    assert (row.status, row.phase) == ("running", "starting")
    assert row.worker.startswith("w:") and row.started_at == row.heartbeat_at
    if model is Representation:
        assert row.attempts == 1  # the claim is counted once


@pytest.mark.parametrize(("model", "add", "claim"), KINDS)
def test_claims_take_the_oldest_queued_job_first(
    workspace: Workspace, model: JobModel, add: Adder, claim: Claimer
) -> None:
    first, second = _queue(workspace, add, 2)
    assert with_write_retry(workspace.engine, lambda s: claim(s, "w:1")) == first
    assert with_write_retry(workspace.engine, lambda s: claim(s, "w:2")) == second
    assert with_write_retry(workspace.engine, lambda s: claim(s, "w:3")) is None
    assert with_write_retry(
        workspace.engine,
        lambda s: jobs.finish(s, model, first, worker="w:1", status="succeeded", now=utcnow()),
    )
    row = _row(workspace, model, first)
    assert (row.status, row.phase, row.error) == ("succeeded", "done", None)


def test_a_claim_can_be_narrowed_to_a_round_or_to_projects(workspace: Workspace) -> None:
    engine = workspace.engine
    first, second = _queue(workspace, _add_round, 2)

    def claim_round(round_id: int) -> int | None:
        return with_write_retry(
            engine,
            lambda s: round_queries.claim_next_round(
                s, worker="w", now=utcnow(), round_id=round_id
            ),
        )

    assert claim_round(second) == second  # not the older one
    assert claim_round(second) is None  # no longer queued
    owner = _row(workspace, Round, first).project_id
    job_id = with_write_retry(engine, lambda s: _add_representation(s, owner))

    def claim_job(project_ids: list[int]) -> int | None:
        return with_write_retry(
            engine,
            lambda s: rep_queries.claim_representation(
                s, worker="w", now=utcnow(), project_ids=project_ids
            ),
        )

    assert claim_job([]) is None  # no project admitted: nothing is claimed
    assert claim_job([owner + 100]) is None
    assert claim_job([owner]) == job_id


@pytest.mark.parametrize(("model", "add", "claim"), KINDS)
def test_heartbeat_cancel_and_finish(
    workspace: Workspace, model: JobModel, add: Adder, claim: Claimer
) -> None:
    engine = workspace.engine
    running, queued = _queue(workspace, add, 2)
    assert with_write_retry(engine, lambda s: claim(s, "w:1")) == running  # the older one
    # a queued job: cancelled at once
    with_write_retry(engine, lambda s: jobs.request_cancel(s, model, queued, utcnow()))

    def beat(job_id: int, worker: str, **values: Any) -> tuple[bool, bool]:
        return with_write_retry(
            engine,
            lambda s: jobs.heartbeat(s, model, job_id, worker=worker, now=utcnow(), **values),
        )

    assert beat(running, "w:1", phase="training", progress=0.5, detail={"epoch": 1}) == (
        True,
        False,
    )
    row = _row(workspace, model, running)
    assert (row.phase, row.progress, row.detail) == ("training", 0.5, {"epoch": 1})
    assert beat(running, "w:2") == (False, False)  # not its job
    assert not with_write_retry(
        engine, lambda s: jobs.set_running_fields(s, model, running, worker="w:2", detail={})
    )
    # a running job: its worker is told at its next heartbeat
    with_write_retry(engine, lambda s: jobs.request_cancel(s, model, running, utcnow()))
    assert beat(running, "w:1") == (True, True)
    assert _row(workspace, model, running).detail == {"epoch": 1}  # a bare beat keeps progress

    def finish(worker: str | None, status: str) -> bool:
        return with_write_retry(
            engine,
            lambda s: jobs.finish(s, model, running, worker=worker, status=status, now=utcnow()),
        )

    assert not finish("w:2", "succeeded")  # only its own worker (or the reaper) finishes it
    assert finish("w:1", "cancelled")
    assert not finish(None, "failed")  # no longer running
    assert beat(running, "w:1") == (False, False)
    for job_id in (queued, running):
        row = _row(workspace, model, job_id)
        assert (row.status, row.phase) == ("cancelled", "cancelled")
        assert row.finished_at is not None
    assert _row(workspace, model, queued).error == "cancelled by request"


@pytest.mark.parametrize(("model", "add", "claim"), KINDS)
def test_stale_lists_running_jobs_silent_since_the_cutoff(
    workspace: Workspace, model: JobModel, add: Adder, claim: Claimer
) -> None:
    engine = workspace.engine
    silent, fresh, _queued = _queue(workspace, add, 3)
    assert with_write_retry(engine, lambda s: claim(s, "w:1")) == silent
    assert with_write_retry(engine, lambda s: claim(s, "w:2")) == fresh
    long_ago = utcnow() - timedelta(minutes=5)
    with_write_retry(
        engine,
        lambda s: jobs.set_running_fields(s, model, silent, worker="w:1", heartbeat_at=long_ago),
    )
    cutoff = utcnow() - timedelta(minutes=1)
    owner = _row(workspace, model, silent).project_id
    with read_session(engine) as session:
        assert jobs.stale(session, model, older_than=cutoff) == [(silent,)]
        assert jobs.stale(session, model, model.id, model.worker, older_than=cutoff) == [
            (silent, "w:1")
        ]
        assert jobs.stale(session, model, older_than=cutoff, project_id=owner) == [(silent,)]
        assert jobs.stale(session, model, older_than=cutoff, project_id=owner + 1) == []
