"""Queue speed: next_task + submit with a 100,000-sample pool on SQLite, and import throughput.

Run: .venv/bin/python benchmarks/queue_speed.py [--pool 100000] [--calls 500] [--images 10000]
Prints a table of median and p99 latency per call (cold-start order and ranked by a round's
scores), and images/s for importing small PNGs from a folder.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activelearn import Workspace
from activelearn.clock import utcnow
from db.engine import write_session
from db.models import Round, Sample, SampleScore
from tests.conftest import write_images


def _fill_pool(ws: Workspace, project_id: int, n: int) -> None:
    rng = random.Random(0)
    now = utcnow()
    with write_session(ws.engine) as session:
        session.execute(
            Sample.__table__.insert(),
            [
                {
                    "project_id": project_id,
                    "path": f"/pool/{i}.png",
                    "sha256": f"{i:064x}",
                    "width": 28,
                    "height": 28,
                    "split": "pool",
                    "status": "open",
                    "skip_count": 0,
                    "random_key": rng.random(),
                    "cache_shard": 0,
                    "cache_index": i,
                    "created_at": now,
                }
                for i in range(n)
            ],
        )


def _add_round(ws: Workspace, project_id: int) -> None:
    rng = random.Random(1)
    now = utcnow()
    with write_session(ws.engine) as session:
        round_row = Round(
            project_id=project_id,
            status="succeeded",
            phase="done",
            progress=1.0,
            detail={},
            n_labels=0,
            strategy="bald",
            config={},
            cancel_requested=False,
            created_at=now,
            finished_at=now,
        )
        session.add(round_row)
        session.flush()
        ids = [
            row[0]
            for row in session.execute(Sample.__table__.select().with_only_columns(Sample.id))
        ]
        scores = sorted(((rng.random(), sample_id) for sample_id in ids), reverse=True)
        session.execute(
            SampleScore.__table__.insert(),
            [
                {
                    "round_id": round_row.id,
                    "sample_id": sample_id,
                    "mutual_information": mi,
                    "predictive_entropy": mi + 0.1,
                    "expected_entropy": 0.1,
                    "variance": mi / 10,
                    "margin": 0.5,
                    "predicted_class": 0,
                    "confidence": 0.5,
                    "mean_probs": [0.5, 0.5],
                    "member_predictions": [0, 1, 0, 1, 0],
                    "priority": mi,
                    "rank": rank + 1,
                }
                for rank, (mi, sample_id) in enumerate(scores)
            ],
        )


def _time_calls(ws: Workspace, name: str, calls: int) -> tuple[list[float], list[float]]:
    project = ws.project(name)
    project.next_task(annotator="warm-up")
    next_times: list[float] = []
    submit_times: list[float] = []
    for i in range(calls):
        start = time.perf_counter()
        task = project.next_task(annotator="bench")
        middle = time.perf_counter()
        assert task is not None
        project.submit(task.id, label="ab"[i % 2], annotator="bench")
        end = time.perf_counter()
        next_times.append((middle - start) * 1000)
        submit_times.append((end - middle) * 1000)
    return next_times, submit_times


def _row(label: str, values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    return f"| {label:<38} | {statistics.median(values):8.2f} | {p99:8.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(f"sqlite:///{tmp}/bench.db", data_dir=Path(tmp) / "data")
        rows = []
        for name, ranked in (("cold", False), ("ranked", True)):
            # retrain_every=0: measure the queue itself, not the automatic round trigger.
            project = ws.create_project(
                name, classes=["a", "b"], settings={"audit_share": 0.1, "retrain_every": 0}
            )
            _fill_pool(ws, project.id, args.pool)
            if ranked:
                _add_round(ws, project.id)
            next_times, submit_times = _time_calls(ws, name, args.calls)
            both = [a + b for a, b in zip(next_times, submit_times, strict=True)]
            mode = "ranked by a round" if ranked else "cold start"
            rows += [
                _row(f"next_task ({mode})", next_times),
                _row(f"submit ({mode})", submit_times),
                _row(f"next_task + submit ({mode})", both),
            ]
        print(f"Queue latency, SQLite, pool of {args.pool:,} samples, {args.calls} calls each (ms)")
        print("| operation                              |   median |      p99 |")
        print("|----------------------------------------|----------|----------|")
        print("\n".join(rows))

        folder = Path(tmp) / "images"
        write_images(folder, args.images)
        project = ws.create_project("import", classes=["a", "b"])
        start = time.perf_counter()
        report = project.import_images(folder)
        seconds = time.perf_counter() - start
        print()
        print(f"Import of {args.images:,} small PNGs (16x16) from a folder")
        print("| images | seconds | images/s |")
        print("|--------|---------|----------|")
        accepted = len(report.accepted)
        print(f"| {accepted:6d} | {seconds:7.2f} | {accepted / seconds:8.0f} |")
        ws.close()


if __name__ == "__main__":
    main()
