"""Dashboard render time on a synthetic project: a 100,000-sample pool and 30 finished rounds.

Builds a SQLite project with the rows the rounds worker writes (rounds, metrics with full
details, training epochs, and sample scores for every pool sample in the latest --score-rounds
rounds), or reuses the one kept in --dir. It then drops every stored pool summary (a database
upgraded from a version without them) and times
  1. the worker's extra step after a round: `store_pool_summary` on the latest rounds;
  2. each data-service call the page makes (no Streamlit cache), and `pool_view`'s fallback
     when a round has no stored summary;
  3. full renders of the page through Streamlit's AppTest: the process's first render
     (imports and empty caches), the first visitor after a round in a running server (caches
     cleared) with the summary stored and without it, warm (every rerun and later visitor),
     and the threshold slider.
AppTest time is the Python side of a render (data, figures, protobuf); the browser then draws.
The machine's load average is printed before and after: on a shared machine it moves the figures.

    .venv/bin/python benchmarks/dashboard_render.py                 # 100k pool, 30 rounds
    .venv/bin/python benchmarks/dashboard_render.py --pool 20000 --score-rounds 2
    .venv/bin/python benchmarks/dashboard_render.py --dir /tmp/dbench-full --first fallback
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
from typing import Any

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


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def delete_summaries(ws: Workspace, project_id: int, round_id: int | None = None) -> None:
    """Drop stored pool summaries (all of the project's, or one round's): the state of a
    database whose rounds were finished by a version without them."""
    from sqlalchemy import delete

    from db import dashboard as dash_queries
    from db.engine import with_write_retry
    from db.models import RoundPoolSummary

    def work(session: Any) -> None:
        if round_id is None:
            dash_queries.delete_pool_summaries(session, project_id)
        else:
            session.execute(delete(RoundPoolSummary).where(RoundPoolSummary.round_id == round_id))

    with_write_retry(ws.engine, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--score-rounds", type=int, default=30, help="rounds with sample scores")
    parser.add_argument("--labels-per-round", type=int, default=100)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--summary-rounds",
        type=int,
        default=5,
        help="latest rounds whose pool summary is computed as the worker does (timed)",
    )
    parser.add_argument(
        "--first",
        choices=("stored", "fallback"),
        default="stored",
        help="the process's first render (imports + empty caches) with the worker's summaries "
        "stored, or without any (the page computes and stores the latest round's)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="keep the database here")
    args = parser.parse_args()

    folder = args.dir or Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'bench.db'}"
    os.environ["ACTIVELEARN_DB_URL"] = url
    os.environ["ACTIVELEARN_DATA_DIR"] = str(folder / "data")
    ws = Workspace(url, data_dir=folder / "data")  # applies new migrations to a kept database
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
    print(f"load average before: {load_average()}")
    repeats = args.repeats

    # Start like a database upgraded from a version without summaries.
    delete_summaries(ws, project.id)

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    def render() -> AppTest:
        at = AppTest.from_file(str(PAGE), default_timeout=120)
        at.session_state["project_name"] = "bench"
        return at.run()

    def timed_render() -> tuple[float, AppTest]:
        start = time.perf_counter()
        at = render()
        seconds = time.perf_counter() - start
        assert not at.exception, at.exception
        return seconds, at

    def precompute() -> tuple[list[float], int]:
        """The worker's step after each round, on the latest --summary-rounds rounds (oldest
        first, as they would have finished); seconds per round and the latest's stored size."""
        scored = [r.id for r in summary.rounds][-max(args.summary_rounds, 2) :]
        seconds = []
        for round_id in scored:
            start = time.perf_counter()
            data.store_pool_summary(ws.engine, round_id)
            seconds.append(time.perf_counter() - start)
        stored = json.dumps(data.pool_view_to_json(data.pool_view(project, latest.id, previous.id)))
        return seconds, len(stored)

    first_render = None
    if args.first == "fallback":
        first_render, at = timed_render()
    worker_seconds, summary_bytes = precompute()
    if args.first == "stored":
        first_render, at = timed_render()
    n_charts = len(at.get("plotly_chart"))

    # Data-service calls, no Streamlit cache.
    curves = data.learning_curves(project).curves
    view = data.pool_view(project, latest.id, previous.id)
    fresh = data.compute_pool_view(project, latest.id, previous.id)
    assert data.pool_view_to_json(view) == data.pool_view_to_json(fresh)  # stored == fresh

    def fallback_pool_view() -> None:
        delete_summaries(ws, project.id, latest.id)
        start = time.perf_counter()
        data.pool_view(project, latest.id, previous.id)
        fallback_times.append(time.perf_counter() - start)

    fallback_times: list[float] = []
    for _ in range(repeats):
        fallback_pool_view()
    calls = [
        ("overview (rounds)", lambda: data.overview(project)),
        ("label_version", lambda: data.label_version(project)),
        ("learning_curves", lambda: data.learning_curves(project)),
        ("training_curves", lambda: data.training_curves(project, latest.id)),
        (
            "pool_view (stored summary read)",
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
    rows = [(name, time_call(fn, repeats=repeats)) for name, fn in calls]
    total = sum(t for _, t in rows)

    # Page renders in this (now warm) process: what the first visitor after a round pays.
    stored_cold = []
    fallback_cold = []
    for _ in range(repeats):
        st.cache_data.clear()
        stored_cold.append(timed_render()[0])
        st.cache_data.clear()
        delete_summaries(ws, project.id, latest.id)
        fallback_cold.append(timed_render()[0])
    warm_times = [timed_render()[0] for _ in range(repeats)]
    start = time.perf_counter()
    at.slider(key="dashboard_threshold").set_value(0.5).run()
    slider = time.perf_counter() - start
    assert not at.exception

    median = statistics.median
    width = 64

    def line(name: str, value: str) -> None:
        print(f"{name:<{width}} {value}")

    print()
    line(f"worker side, after each round (median of {len(worker_seconds)})", "seconds")
    line("store_pool_summary (2 rounds read, computed, stored)", f"{median(worker_seconds):7.3f}")
    line("  min / max", f"{min(worker_seconds):7.3f} / {max(worker_seconds):.3f}")
    print(f"stored summary of the latest round: {summary_bytes / 1024:,.0f} KiB of JSON")
    print()
    line(f"data service call (no Streamlit cache, median of {repeats})", "seconds")
    for name, seconds in rows:
        line(name, f"{seconds:7.3f}")
    line("sum", f"{total:7.3f}")
    line(
        "pool_view fallback (no summary: 2 rounds read, computed, stored)",
        f"{median(fallback_times):7.3f}",
    )
    print()
    line(f"page render through AppTest (median of {repeats})", "seconds")
    line(
        f"first render of the process (imports, empty caches; {args.first})", f"{first_render:7.3f}"
    )
    line(
        "cold: first visitor after a round, summary stored by the worker",
        f"{median(stored_cold):7.3f}",
    )
    line(
        "cold: first visitor, no summary (the page computes + stores it)",
        f"{median(fallback_cold):7.3f}",
    )
    line("warm (cached round)", f"{median(warm_times):7.3f}")
    line("slider moved (rerun)", f"{slider:7.3f}")
    print(f"charts rendered: {n_charts}")
    print(f"load average after: {load_average()}")
    ws.close()


if __name__ == "__main__":
    main()
