"""Concurrency while training: 8 annotator processes x 300 labels while a real round trains.

Issue 7, item 2. One database, a real worker process training and scoring the demo pool, and
eight separate annotator processes (each its own interpreter, engine and connection pool) that
label through the public API as fast as they can. Afterwards: no sample was held by two
annotators at once, every acknowledged label is stored exactly once, and no child saw an error.
The test prints the throughput and the longest a label write waited.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from activelearn import Workspace
from db.engine import read_session, sqlite_integrity_check
from db.models import AcquisitionEntry, Annotation, Lease
from tests.processes import REPO, child_env, round_row, start_worker, wait_for

WORKER_OPTIONS = ("--once", "--threads", "1", "--poll", "0.2")  # one round, one CPU thread
ANNOTATORS = 8
LABELS_EACH = 300
SEED_LABELS = 30  # labeled before the round, so that it has something to train on
# The round: 2 members, and enough epochs that training is still going when labeling starts and
# that it ends (writing 4,000 pool scores) while the annotators are still at work.
# The CNN learner: a round that trains for a while (the embedding learner's take a second).
ROUND_SETTINGS = {
    "learner": "cnn",
    "strategy": "bald",
    "members": 2,
    "epochs": 150,
    "retrain_every": 0,
    "batch_size": 64,
}
CHILD_TIMEOUT_S = 240.0

# One annotator process: open the workspace, say ready, wait for the start file, then
# next_task -> submit LABELS_EACH times, timing each call; results (or the traceback) go to JSON.
ANNOTATOR_SCRIPT = r"""
import json, sys, time, traceback
from pathlib import Path

url, data_dir, project_name, annotator, count, go_file, out_file = sys.argv[1:]
result = {"annotator": annotator, "records": [], "error": None}
try:
    from activelearn import Workspace

    workspace = Workspace(url, data_dir=data_dir)
    project = workspace.project(project_name)
    classes = project.classes
    Path(out_file + ".ready").write_text("ready")
    while not Path(go_file).exists():
        time.sleep(0.002)
    for index in range(int(count)):
        asked = time.time()
        task = project.next_task(annotator)
        served = time.time()
        if task is None:
            raise AssertionError(f"{annotator}: the queue ran dry after {index} labels")
        label = classes[index % len(classes)]
        project.submit(task.id, label=label, annotator=annotator)
        done = time.time()
        # Only now is the label acknowledged: submit returned without an error.
        result["records"].append(
            [task.id, task.sample_id, label, asked, served, done, task.strategy, task.round_id]
        )
    workspace.close()
except BaseException:
    result["error"] = traceback.format_exc()
Path(out_file).write_text(json.dumps(result))
sys.exit(1 if result["error"] else 0)
"""


@dataclass(frozen=True)
class Acknowledged:
    annotator: str
    task_id: int
    sample_id: int
    label: str
    asked: float  # wall clock (time.time) before next_task
    served: float  # after next_task returned: the lease is held from here
    done: float  # after submit returned: the label is acknowledged, the lease released
    strategy: str
    round_id: int | None


def epoch_seconds(naive_utc: datetime) -> float:
    return naive_utc.replace(tzinfo=timezone.utc).timestamp()


def assert_no_overlapping_holds(ws: Workspace, project_id: int) -> int:
    """From the acquisition log: a sample is served again only after its previous hold ended
    (labeled, skipped or released, or its lease expired). Returns the number of servings."""
    with read_session(ws.engine) as session:
        rows = session.execute(
            select(
                AcquisitionEntry.sample_id,
                AcquisitionEntry.id,
                AcquisitionEntry.annotator,
                AcquisitionEntry.served_at,
                AcquisitionEntry.closed_at,
                AcquisitionEntry.expires_at,
            )
            .where(AcquisitionEntry.project_id == project_id)
            .order_by(AcquisitionEntry.sample_id, AcquisitionEntry.id)
        ).all()
    by_sample: dict[int, list] = defaultdict(list)
    for row in rows:
        by_sample[int(row.sample_id)].append(row)
    for sample_id, servings in by_sample.items():
        for before, after in itertools.pairwise(servings):
            ended = min(before.closed_at or before.expires_at, before.expires_at)
            assert ended <= after.served_at, (
                f"sample {sample_id} served to {after.annotator} (task {after.id}) at "
                f"{after.served_at} while {before.annotator} held it (task {before.id}) "
                f"until {ended}"
            )
    return len(rows)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_eight_annotator_processes_label_while_a_round_trains(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    ws = Workspace(db_url, data_dir=tmp_path / "data")
    children: list[subprocess.Popen[bytes]] = []
    worker: subprocess.Popen[bytes] | None = None
    try:
        # The MNIST demo: 4,000 pool digits (enough for 2,400 labels and a real scoring pass)
        # and 1,000 gold test digits the round evaluates on.
        project = ws.ensure_demo()
        project.update_settings(**ROUND_SETTINGS)
        for index in range(SEED_LABELS):
            task = project.next_task("seed")
            project.submit(task.id, label=str(index % 10), annotator="seed")

        go_file = tmp_path / "go"
        outputs = [tmp_path / f"annotator-{i}.json" for i in range(ANNOTATORS)]
        for i, out in enumerate(outputs):
            arguments = [ws.url, str(ws.data_dir), project.name, f"annotator-{i}"]
            arguments += [str(LABELS_EACH), str(go_file), str(out)]
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", ANNOTATOR_SCRIPT, *arguments],
                    cwd=REPO,
                    env=child_env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )

        def ready() -> bool:
            for child, out in zip(children, outputs, strict=True):
                if child.poll() is not None:
                    error = json.loads(out.read_text())["error"] if out.exists() else ""
                    raise AssertionError(f"an annotator process exited early: {error}")
            return all(Path(str(out) + ".ready").exists() for out in outputs)

        wait_for(ready, timeout=120, what="the annotator processes to start")
        # The worker starts only now: on a loaded machine eight processes importing torch can
        # take longer than a whole round, and the round must still be training when they label.
        queued = project.request_round(requested_by="test")
        worker_log = tmp_path / "worker.log"
        worker = start_worker(ws, *WORKER_OPTIONS, log=worker_log)
        wait_for(
            lambda: round_row(ws, queued.id).phase == "training",
            timeout=120,
            what=f"round {queued.id} to start training ({worker_log})",
        )
        go_file.write_text("go")
        labeling_started = time.time()
        at_start = round_row(ws, queued.id)
        assert at_start.status == "running" and at_start.phase == "training", (
            "the round must be training when labeling starts; make it longer",
            at_start.status,
            at_start.phase,
        )

        errors: list[str] = []
        for child in children:
            try:
                _out, err = child.communicate(timeout=CHILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                _out, err = child.communicate()
                errors.append("an annotator process timed out")
            if child.returncode != 0:
                errors.append(f"exit {child.returncode}: {err.decode()[-3000:]}")
        labeling_ended = time.time()
        results = [json.loads(out.read_text()) for out in outputs if out.exists()]
        errors += [r["error"] for r in results if r["error"]]
        assert errors == [], "\n\n".join(errors)  # no lock error (or anything else) escaped

        worker_output = ""
        try:
            worker.wait(timeout=240)
        finally:
            worker_output = worker_log.read_text()
        finished = round_row(ws, queued.id)
        assert finished.status == "succeeded", (finished.error, worker_output[-3000:])
        assert worker.returncode == 0, worker_output[-3000:]
        assert "Traceback" not in worker_output, worker_output[-3000:]

        acknowledged = [
            Acknowledged(r["annotator"], *record) for r in results for record in r["records"]
        ]
        assert len(acknowledged) == ANNOTATORS * LABELS_EACH

        # No sample held by two annotators at once. Client side: every serving is a different
        # sample (no label was ever undone, so no sample may come back). Database side: the
        # acquisition log shows no serving that began before the previous hold ended.
        served = [a.sample_id for a in acknowledged]
        assert len(set(served)) == len(served), "a sample was served to two annotators"
        servings = assert_no_overlapping_holds(ws, project.id)
        assert servings == SEED_LABELS + len(acknowledged)
        with read_session(ws.engine) as session:
            assert session.scalar(select(func.count()).select_from(Lease)) == 0
            live = session.scalar(
                select(func.count()).where(
                    Annotation.project_id == project.id, Annotation.superseded.is_(False)
                )
            )

        # No lost labels, no duplicated ones.
        labels = project.labels()
        assert labels["sample_id"].is_unique, "a sample has two current labels"
        assert live == len(labels) == SEED_LABELS + len(acknowledged)
        stored = {
            int(s): (str(lbl), str(who))
            for s, lbl, who in zip(
                labels["sample_id"], labels["label"], labels["annotator"], strict=True
            )
        }
        lost = [a for a in acknowledged if stored.get(a.sample_id) != (a.label, a.annotator)]
        assert lost == [], f"{len(lost)} acknowledged labels are missing, e.g. {lost[:3]}"
        if backend == "sqlite":
            assert sqlite_integrity_check(ws.engine) == "ok"

        # The round really overlapped the labeling.
        round_started = epoch_seconds(finished.started_at)
        round_finished = epoch_seconds(finished.finished_at)
        assert round_started < labeling_started < round_finished
        from_new_ranking = sum(a.round_id == queued.id for a in acknowledged)
        if round_finished < labeling_ended - 1.0:
            # It finished mid-labeling: the queue switched to its ranking while labels went on.
            assert from_new_ranking > 0

        elapsed = labeling_ended - labeling_started
        waits = sorted(a.done - a.served for a in acknowledged)
        longest_serve = max(a.served - a.asked for a in acknowledged)
        overlap = min(round_finished, labeling_ended) - labeling_started
        line = (
            f"training-concurrency[{backend}]: {len(acknowledged)} labels in {elapsed:.1f} s = "
            f"{len(acknowledged) / elapsed:.0f} labels/s; longest label write wait "
            f"{waits[-1] * 1000:.0f} ms (p50 {waits[len(waits) // 2] * 1000:.0f} ms, p99 "
            f"{waits[int(len(waits) * 0.99)] * 1000:.0f} ms; longest next_task "
            f"{longest_serve * 1000:.0f} ms); round {finished.status} after "
            f"{round_finished - round_started:.1f} s, overlapping labeling for {overlap:.1f} s; "
            f"{from_new_ranking} labels served from its ranking"
        )
        print(line)
        with capsys.disabled():
            print("\n" + line)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        ws.close()
