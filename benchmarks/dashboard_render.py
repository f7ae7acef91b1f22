"""Dashboard render time on a synthetic project: a 100,000-sample pool and 30 finished rounds.

Builds a SQLite project with the rows the rounds worker writes (rounds, metrics with full
details, training epochs, and sample scores for every pool sample in the latest --score-rounds
rounds), then times
  1. each data-service call the page makes, cold (no Streamlit cache);
  2. a full render of the page through Streamlit's AppTest, cold (empty caches) and warm
     (the same rounds again: what every rerun and every later visitor pays).
AppTest time is the Python side of a render (data, figures, protobuf); the browser then draws.

    .venv/bin/python benchmarks/dashboard_render.py                 # 100k pool, 30 rounds
    .venv/bin/python benchmarks/dashboard_render.py --pool 20000 --score-rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activelearn import Workspace
from activelearn.services import dashboard as data

PAGE = Path(__file__).resolve().parents[1] / "activelearn" / "ui" / "app_pages" / "dashboard.py"


def build(ws: Workspace, args: argparse.Namespace) -> tuple[int, float]:
    """Write the synthetic project; returns (project id, seconds spent)."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    classes = [str(i) for i in range(args.classes)]
    project = ws.create_project("bench", classes, settings={"retrain_every": 0})
    images = Path(ws.data_dir) / "bench-images"
    images.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    paths = []
    for i in range(64):  # the pool's paths cycle over 64 real 28x28 PNGs (thumbnails work)
        path = images / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(path)
        paths.append(str(path))
    n = args.pool
    labels_per_round = args.labels_per_round
    n_labeled = labels_per_round * args.rounds
    now = datetime(2026, 1, 1)
    raw = ws.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        sample_rows = []
        for i in range(n):
            labeled = i < n_labeled
            label = classes[int(rng.integers(0, len(classes)))] if labeled else None
            sample_rows.append(
                (
                    project.id,
                    paths[i % len(paths)],
                    f"{i:064x}",
                    28,
                    28,
                    "pool",
                    None,
                    "labeled" if labeled else "open",
                    label,
                    0,
                    float(rng.uniform()),
                    0,
                    i,
                    now,
                )
            )
        cur.executemany(
            "INSERT INTO samples (project_id, path, sha256, width, height, split, gold_label, "
            "status, label, skip_count, random_key, cache_shard, cache_index, created_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            sample_rows,
        )
        first_id = cur.execute(
            "SELECT min(id) FROM samples WHERE project_id = ?", (project.id,)
        ).fetchone()[0]
        annotators = ["ana", "ben", "carl", "dana"]
        cur.executemany(
            "INSERT INTO annotations (project_id, sample_id, task_id, label, annotator, "
            "created_at, superseded, superseded_at) VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    project.id,
                    first_id + i,
                    None,
                    sample_rows[i][8],
                    annotators[i % len(annotators)],
                    now + timedelta(seconds=30 * i),
                    0,
                    None,
                )
                for i in range(n_labeled)
            ],
        )
        for r in range(args.rounds):
            n_labels = labels_per_round * (r + 1)
            accuracy = 0.95 - 0.5 * np.exp(-n_labels / 600)
            cur.execute(
                "INSERT INTO rounds (project_id, status, phase, progress, detail, n_labels, "
                "strategy, config, cancel_requested, created_at, finished_at, checkpoint) "
                "VALUES (?, 'succeeded', 'done', 1.0, '{}', ?, 'bald', '{}', 0, ?, ?, NULL)",
                (
                    project.id,
                    n_labels,
                    now + timedelta(hours=r),
                    now + timedelta(hours=r, minutes=9),
                ),
            )
            round_id = cur.lastrowid
            n_eval = 1000
            conf = rng.uniform(0.3, 1.0, n_eval)
            correct = rng.uniform(size=n_eval) < conf
            order = np.argsort(-conf)
            details = {
                "reliability": {
                    "edges": np.linspace(0, 1, 16).tolist(),
                    "confidence": np.linspace(0.03, 0.97, 15).tolist(),
                    "accuracy": np.linspace(0.0, 1.0, 15).tolist(),
                    "counts": rng.integers(0, 100, 15).tolist(),
                },
                "confusion": rng.integers(0, 20, (len(classes), len(classes))).tolist(),
                "risk_coverage": {
                    "coverage": (np.arange(1, n_eval + 1) / n_eval).tolist(),
                    "risk": (1 - np.cumsum(correct[order]) / np.arange(1, n_eval + 1)).tolist(),
                    "aurc": 0.05,
                },
                "eval_predictions": {
                    "sample_ids": list(range(n_eval)),
                    "confidence": conf.tolist(),
                    "correct": correct.tolist(),
                    "predicted": rng.integers(0, len(classes), n_eval).tolist(),
                    "true": rng.integers(0, len(classes), n_eval).tolist(),
                },
            }
            for member in range(-1, args.members):
                cur.execute(
                    "INSERT INTO round_metrics (round_id, member, eval_source, n_eval, accuracy, "
                    "accuracy_se, nll, nll_se, brier, brier_se, ece, details) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        round_id,
                        member,
                        "test",
                        n_eval,
                        accuracy - (0 if member < 0 else 0.02),
                        0.01,
                        1 - accuracy,
                        0.02,
                        0.2,
                        0.01,
                        0.05,
                        json.dumps(details if member == -1 else {}),
                    ),
                )
                if member >= 0:
                    cur.executemany(
                        "INSERT INTO training_epochs (round_id, member, epoch, train_loss, "
                        "val_loss) VALUES (?,?,?,?,?)",
                        [(round_id, member, e, 2 / (e + 1), None) for e in range(args.epochs)],
                    )
            if r >= args.rounds - args.score_rounds:
                labeled_now = n_labels
                probs = rng.dirichlet(np.full(len(classes), 0.3), size=n).astype(np.float32)
                entropy = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)
                expected = entropy * rng.uniform(0.3, 0.95, n)
                mi = entropy - expected
                top = probs.argmax(1)
                members_top = np.where(
                    rng.uniform(size=(n, args.members)) < 0.8,
                    top[:, None],
                    rng.integers(0, len(classes), (n, args.members)),
                )
                ranks = np.empty(n, dtype=np.int64)
                open_order = np.argsort(-mi[labeled_now:]) + labeled_now
                ranks[open_order] = np.arange(1, n - labeled_now + 1)
                cur.executemany(
                    "INSERT INTO sample_scores (round_id, sample_id, mutual_information, "
                    "predictive_entropy, expected_entropy, variance, margin, predicted_class, "
                    "confidence, mean_probs, member_predictions, rank, priority) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        (
                            round_id,
                            first_id + i,
                            float(mi[i]),
                            float(entropy[i]),
                            float(expected[i]),
                            float(mi[i] / 3),
                            float(rng.uniform()),
                            int(top[i]),
                            float(probs[i, top[i]]),
                            json.dumps([round(float(p), 4) for p in probs[i]]),
                            json.dumps(members_top[i].tolist()),
                            None if i < labeled_now else int(ranks[i]),
                            float(mi[i]),
                        )
                        for i in range(n)
                    ),
                )
        cur.execute("COMMIT")
        cur.execute("ANALYZE")
    finally:
        raw.close()
    return project.id, time.perf_counter() - start


def time_call(fn, repeats: int = 1) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--score-rounds", type=int, default=30, help="rounds with sample scores")
    parser.add_argument("--labels-per-round", type=int, default=100)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="keep the database here")
    args = parser.parse_args()

    folder = args.dir or Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'bench.db'}"
    os.environ["ACTIVELEARN_DB_URL"] = url
    os.environ["ACTIVELEARN_DATA_DIR"] = str(folder / "data")
    ws = Workspace(url, data_dir=folder / "data")
    try:
        project = ws.project("bench")
        built = 0.0
    except Exception:
        _, built = build(ws, args)
        project = ws.project("bench")
    size_mb = (folder / "bench.db").stat().st_size / 2**20
    summary = data.overview(project)
    latest, previous = summary.latest, summary.previous
    assert latest is not None and previous is not None
    n_scores = args.pool * args.score_rounds
    print(
        f"pool {args.pool:,} samples, {len(summary.rounds)} rounds, sample_scores rows "
        f"{n_scores:,} ({args.score_rounds} rounds scored), labels {latest.n_labels:,}, "
        f"database {size_mb:,.0f} MiB, built in {built:.1f} s"
    )

    curves = data.learning_curves(project).curves
    view = data.pool_view(project, latest.id, previous.id)
    calls = [
        ("overview (rounds)", lambda: data.overview(project)),
        ("label_version", lambda: data.label_version(project)),
        ("learning_curves", lambda: data.learning_curves(project)),
        ("training_curves", lambda: data.training_curves(project, latest.id)),
        (
            "pool_view (2 rounds read; all pool charts)",
            lambda: data.pool_view(project, latest.id, previous.id),
        ),
        ("round_details", lambda: data.round_details(project, latest.id)),
        ("label_stats", lambda: data.label_stats(project)),
        ("find_label_errors", lambda: data.find_label_errors(project, latest.id)),
        (
            "stopping_advice (given the pool view)",
            lambda: data.stopping_advice(project, curves, view),
        ),
    ]
    rows = [(name, time_call(fn, repeats=3)) for name, fn in calls]
    total = sum(t for _, t in rows)

    from streamlit.testing.v1 import AppTest

    def render() -> AppTest:
        at = AppTest.from_file(str(PAGE), default_timeout=120)
        at.session_state["project_name"] = "bench"
        return at.run()

    start = time.perf_counter()
    at = render()
    cold = time.perf_counter() - start
    assert not at.exception, at.exception
    n_charts = len(at.get("plotly_chart"))
    warm_times = []
    for _ in range(3):
        start = time.perf_counter()
        warm_at = render()
        warm_times.append(time.perf_counter() - start)
        assert not warm_at.exception
    start = time.perf_counter()
    at.slider(key="dashboard_threshold").set_value(0.5).run()
    slider = time.perf_counter() - start

    width = max(len(name) for name, _ in rows) + 2
    print(f"\n{'data service call (cold, median of 3)':<{width}} seconds")
    for name, seconds in rows:
        print(f"{name:<{width}} {seconds:7.3f}")
    print(f"{'sum':<{width}} {total:7.3f}")
    print(f"\n{'page render through AppTest':<{width}} seconds")
    print(f"{'cold (empty caches, first visitor of a new round)':<{width}} {cold:7.3f}")
    print(f"{'warm (cached round; median of 3)':<{width}} {statistics.median(warm_times):7.3f}")
    print(f"{'slider moved (rerun)':<{width}} {slider:7.3f}")
    print(f"charts rendered: {n_charts}")
    ws.close()


if __name__ == "__main__":
    main()
