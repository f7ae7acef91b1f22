"""Crash safety: SIGKILL the worker and the labeling process at random points, many times.

Issue 7, item 3. Each iteration runs, at the same time, a labeling process (a child interpreter
that plays the app server's part: it labels through the public API in a tight loop and prints
each acknowledged task to stdout before it asks for the next) and a real worker process training
a round. Both are SIGKILLed at independent random moments of the round. After every iteration:
SQLite's integrity check passes, every acknowledged label is stored, a fresh Workspace serves a
task, and the killed worker's round is failed with a reason (the heartbeat reaper). At the end a
new round succeeds and is served.

A real `streamlit run app.py` driven by Chromium is SIGKILLed in test_streamlit_server_killed_...
below (fewer times: each restart of the server costs seconds).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from activelearn import Workspace
from activelearn.services import rounds
from activelearn.services.rounds import stale_message
from db.engine import read_session, sqlite_integrity_check
from db.models import Round, SampleScore
from tests.e2e.conftest import browser, chromium_path  # noqa: F401  (fixtures)
from tests.processes import REPO, child_env, round_row, start_worker, wait_for
from tests.services.test_rounds import make_project

KILLS_EACH = 10  # worker kills mid-round, and labeling-process kills mid-labeling
MAX_ITERATIONS = 18  # a kill that lands after the round finished does not count; try again
HEARTBEAT_TIMEOUT_S = 2.0  # the tests' reaper timeout (production: 30 s)
WORKER_OPTIONS = ("--once", "--threads", "1", "--poll", "0.2")
WORKER_OPTIONS += ("--heartbeat-timeout", str(HEARTBEAT_TIMEOUT_S))
POOL_PER_CLASS = 1_200  # 3,600 open pool images: labeling never runs dry within 20 kills
# A cheap round (tiny 12x12 images, 2 members, ~100 optimizer steps) so that a kill lands in
# every phase of it, not only in the long training loop.
ROUND_SETTINGS = {"batch_size": 64}

# The labeling process: next_task -> submit in a tight loop; a line per acknowledged label.
LABELER_SCRIPT = r"""
import sys
from activelearn import Workspace

url, data_dir, project_name, annotator = sys.argv[1:]
project = Workspace(url, data_dir=data_dir).project(project_name)
classes = project.classes
print("ready", flush=True)
sys.stdin.readline()  # the go signal: labeling starts once the round is running
while True:
    task = project.next_task(annotator)
    if task is None:
        print("dry", flush=True)
        break
    label = classes[task.sample_id % len(classes)]
    project.submit(task.id, label=label, annotator=annotator)
    print(f"ack {task.id} {task.sample_id} {label}", flush=True)
"""


class Labeler:
    """The labeling child and a thread that collects its acknowledged labels as they come."""

    def __init__(self, ws: Workspace, project_name: str, annotator: str, log: Path) -> None:
        self.acknowledged: dict[int, str] = {}  # sample id -> label
        self.ready = threading.Event()
        self._log = log.open("ab")
        names = [project_name, annotator]
        self.process = subprocess.Popen(
            [sys.executable, "-c", LABELER_SCRIPT, ws.url, str(ws.data_dir), *names],
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            words = raw.decode().split()
            if words[:1] == ["ready"]:
                self.ready.set()
            elif words[:1] == ["ack"] and len(words) == 4:  # a torn last line is no ack
                self.acknowledged[int(words[2])] = words[3]

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()

    def kill(self) -> bool:
        """SIGKILL; True when it was still labeling (had not died or finished by itself)."""
        alive = self.process.poll() is None
        if alive:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        self._log.close()
        return alive


@dataclass
class Tally:
    worker_kills: int = 0  # SIGKILLs of a worker while its round was running
    worker_kills_late: int = 0  # SIGKILLs that came after the round had finished (not counted)
    labeler_kills: int = 0  # SIGKILLs of a labeling process while it was labeling
    phases: dict[str, int] = field(default_factory=dict)  # round phase at each worker kill
    acknowledged: dict[int, str] = field(default_factory=dict)  # sample id -> label
    failed: int = 0
    succeeded: int = 0


def phase_at(seconds: float, timings: dict[str, float]) -> str:
    """The phase a round is in `seconds` after its claim, by a measured round's timings."""
    elapsed = 0.0
    for phase in ("loading", "training", "evaluating", "scoring", "saving"):
        elapsed += timings.get(phase, 0.0)
        if seconds < elapsed:
            return phase
    return "finishing"


def check_after_crash(url: str, data_dir: Path, project_name: str, tally: Tally) -> None:
    """What a restarted app sees: an intact database holding every acknowledged label, and a
    queue that serves."""
    fresh = Workspace(url, data_dir=data_dir)
    try:
        assert sqlite_integrity_check(fresh.engine) in ("ok", "not sqlite")
        project = fresh.project(project_name)
        labels = project.labels()
        assert labels["sample_id"].is_unique, "a sample has two current labels"
        ids, values = labels["sample_id"].astype(int), labels["label"].astype(str)
        stored = dict(zip(ids, values, strict=True))
        lost = {s: lbl for s, lbl in tally.acknowledged.items() if stored.get(s) != lbl}
        assert not lost, f"{len(lost)} acknowledged labels lost after a crash: {list(lost)[:5]}"
        probe = project.next_task("probe")
        assert probe is not None, "the restarted app serves no task"
        project.release(probe.id, annotator="probe")
    finally:
        fresh.close()


def request_replacing(project, stale_round: int | None) -> int:
    """Queue a round; a killed worker's round is failed first once its heartbeat is stale."""

    def queued() -> int | None:
        info = rounds.request_round(project, stale_after_s=HEARTBEAT_TIMEOUT_S)
        return info.id if info.id != stale_round else None

    return wait_for(queued, timeout=HEARTBEAT_TIMEOUT_S + 30, every=0.2, what="a new round")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_worker_and_labeler_at_random_points(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    seed = int(os.environ.get("ACTIVELEARN_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    ws = Workspace(db_url, data_dir=data_dir)
    tally = Tally()
    started = time.monotonic()
    try:
        # 3 classes of synthetic 12x12 images: 12 labeled, 2,400 open, 15 gold test images.
        project = make_project(
            ws, tmp_path / "images", n_open=POOL_PER_CLASS, settings=ROUND_SETTINGS
        )

        # A first round, not killed, measures how long a round takes here and now.
        first = project.request_round().id
        worker = start_worker(ws, *WORKER_OPTIONS, log=tmp_path / "worker.log")
        assert worker.wait(timeout=300) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        done = round_row(ws, first)
        assert done.status == "succeeded", done.error
        tally.succeeded += 1
        round_seconds = (done.finished_at - done.started_at).total_seconds()
        first_timings = dict(done.detail["timings"])

        stale: int | None = None
        for iteration in range(MAX_ITERATIONS):
            if tally.worker_kills >= KILLS_EACH and tally.labeler_kills >= KILLS_EACH:
                break
            labeler = Labeler(ws, project.name, "ana", tmp_path / "labeler.log")
            round_id = request_replacing(project, stale)
            if stale is not None:
                # The previous iteration's killed round: failed by the reaper, with the reason,
                # and nothing it wrote is left behind.
                reaped = round_row(ws, stale)
                assert reaped.status == "failed", (stale, reaped.status)
                assert reaped.error == stale_message(HEARTBEAT_TIMEOUT_S)
                with read_session(ws.engine) as session:
                    left = session.scalar(select(func.count()).where(SampleScore.round_id == stale))
                assert left == 0
                tally.failed += 1
                stale = None
            worker = start_worker(ws, *WORKER_OPTIONS, log=tmp_path / "worker.log")
            try:
                wait_for(labeler.ready.is_set, timeout=120, what="the labeler to start")
                wait_for(
                    lambda claimed=round_id: round_row(ws, claimed).status != "queued",
                    timeout=120,
                    what="the worker to claim the round",
                )
                # Independent random moments within the round's expected span; every other
                # worker kill aims at its second half (evaluating, scoring, saving the scores).
                low = 0.0 if iteration % 2 == 0 else 0.5 * round_seconds
                kill_worker_at = rng.uniform(low, round_seconds * 1.1)
                kill_labeler_at = rng.uniform(0.0, round_seconds * 1.2)
                labeler.go()
                zero = time.monotonic()
                for at, which in sorted([(kill_worker_at, "w"), (kill_labeler_at, "l")]):
                    time.sleep(max(0.0, zero + at - time.monotonic()))
                    if which == "l":
                        assert labeler.process.poll() is None, (
                            "the labeler died by itself",
                            (tmp_path / "labeler.log").read_text()[-3000:],
                        )
                        assert labeler.kill()
                        tally.labeler_kills += 1
                        continue
                    if worker.poll() is None:
                        os.kill(worker.pid, signal.SIGKILL)
                    worker.wait(timeout=30)
                    row = round_row(ws, round_id)
                    if row.status == "running":
                        tally.worker_kills += 1
                        # The stored phase lags by up to a heartbeat: estimate it from the
                        # first round's phase timings instead.
                        phase = phase_at(time.monotonic() - zero, first_timings)
                        tally.phases[phase] = tally.phases.get(phase, 0) + 1
                        stale = round_id
                    else:  # it finished before the kill came
                        assert row.status == "succeeded", row.error
                        tally.worker_kills_late += 1
                        tally.succeeded += 1
            finally:
                labeler.kill()
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
            tally.acknowledged.update(labeler.acknowledged)
            check_after_crash(ws.url, data_dir, project.name, tally)

        assert tally.worker_kills >= KILLS_EACH and tally.labeler_kills >= KILLS_EACH, tally

        # The end: a new round (the last killed one is failed on the way) runs and is served.
        final = request_replacing(project, stale)
        if stale is not None:
            assert round_row(ws, stale).status == "failed"
            tally.failed += 1
        worker = start_worker(ws, *WORKER_OPTIONS, log=tmp_path / "worker.log")
        assert worker.wait(timeout=300) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        finished = round_row(ws, final)
        assert finished.status == "succeeded", finished.error
        tally.succeeded += 1
        check_after_crash(ws.url, data_dir, project.name, tally)
        task = project.next_task("after")
        assert task is not None and task.round_id == final
        with read_session(ws.engine) as session:
            statuses = dict(
                session.execute(
                    select(Round.status, func.count())
                    .where(Round.project_id == project.id)
                    .group_by(Round.status)
                ).all()
            )
        assert statuses == {"failed": tally.failed, "succeeded": tally.succeeded}, statuses
        stored = len(project.labels())
    finally:
        ws.close()

    line = (
        f"crash-safety[{backend}] seed {seed}: {tally.worker_kills} worker kills mid-round "
        f"(phases {dict(sorted(tally.phases.items()))}; {tally.worker_kills_late} more after "
        f"the round ended), {tally.labeler_kills} labeling-process kills; "
        f"{len(tally.acknowledged)} labels acknowledged, all found ({stored} stored, the rest "
        f"committed just before a kill); rounds failed {tally.failed} / succeeded "
        f"{tally.succeeded}; {time.monotonic() - started:.0f} s"
    )
    print(line)
    with capsys.disabled():
        print("\n" + line)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(600)
def test_streamlit_server_killed_while_a_browser_labels(
    tmp_path: Path,
    browser: Any,  # noqa: F811  (the e2e fixture imported above)
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real app server, SIGKILLed twice while Chromium labels through it with the keyboard:
    every label whose next image appeared is stored, and the restarted app serves again."""
    from tests.browser import start_app
    from tests.e2e.conftest import open_label_page, press_and_wait

    db_url = f"sqlite:///{tmp_path / 'al.db'}"
    data_dir = tmp_path / "data"
    with Workspace(db_url, data_dir=data_dir) as ws:
        ws.ensure_demo().update_settings(retrain_every=0)
    rng = random.Random()
    acknowledged = 0
    in_flight_stored = 0  # unacknowledged presses (one per kill at most) that did commit
    kills = 0

    def serve() -> tuple[subprocess.Popen[bytes], str]:
        with (tmp_path / "streamlit.log").open("ab") as log:
            return start_app(db_url, data_dir, log=log)

    for _ in range(3):
        server, url = serve()
        try:
            page = open_label_page(browser, url, "web")  # the app starts and serves a task
            if kills == 2:
                page.context.close()
                break
            deadline = time.monotonic() + rng.uniform(1.0, 4.0)
            while time.monotonic() < deadline:
                press_and_wait(page, rng.choice("0123456789"))
                acknowledged += 1  # the next image is on screen: the label was committed
            page.keyboard.press(rng.choice("0123456789"))  # one more, maybe in flight
            time.sleep(rng.uniform(0.0, 0.2))
            os.kill(server.pid, signal.SIGKILL)
            kills += 1
            page.context.close()
        finally:
            if server.poll() is None:
                server.kill()
            server.wait(timeout=30)
        with Workspace(db_url, data_dir=data_dir) as ws:
            assert sqlite_integrity_check(ws.engine) == "ok"
            mine = (ws.project("demo").labels()["annotator"] == "web").sum()
        floor = acknowledged + in_flight_stored
        assert floor <= mine <= floor + 1, (acknowledged, in_flight_stored, mine)
        in_flight_stored = int(mine) - acknowledged
    assert kills == 2
    line = (
        f"crash-safety[streamlit]: {kills} SIGKILLs of `streamlit run app.py` while Chromium "
        f"labeled; {acknowledged} labels acknowledged in the browser, {mine} stored; the "
        f"restarted app served the next task"
    )
    print(line)
    with capsys.disabled():
        print("\n" + line)
