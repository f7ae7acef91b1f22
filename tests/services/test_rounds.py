"""Rounds end to end in-process: train, evaluate, score, serve; audit hold-out; triggers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activelearn import Workspace
from activelearn.clock import utcnow
from activelearn.core.cnn_learner import MIN_TRAIN_STEPS
from activelearn.errors import NotEnoughLabels, NothingToExport
from activelearn.services import export, rounds, triggers, worker_loop
from activelearn.services.pipeline import score_pool
from activelearn.services.round_runner import claim_round, run_round
from db import rounds as round_queries
from db.engine import read_session
from db.models import Round, RoundMetric, RoundPoolSummary, SampleScore, TrainingEpoch

CLASSES = ["left", "right", "top"]
SIZE = 12
TINY = {
    "learner": "cnn",  # these tests are about the CNN ensemble's rounds
    "strategy": "bald",
    "members": 2,
    "epochs": 2,
    "batch_size": 16,
    "image_size": SIZE,
    "retrain_every": 0,
    "audit_share": 0.0,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic_png(cls: int, seed: int) -> bytes:
    """A 12x12 grayscale image whose bright region says its class; noise makes it unique."""
    rng = np.random.default_rng(seed * 7 + cls)
    pixels = rng.integers(0, 60, size=(SIZE, SIZE)).astype(np.int64)
    half = SIZE // 2
    if cls == 0:
        pixels[:, :half] += 180
    elif cls == 1:
        pixels[:, half:] += 180
    else:
        pixels[:half, :] += 180
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_manifest(
    folder: Path, rows: list[tuple[int, int, str | None, str | None]], *, name: str
) -> Path:
    """rows: (class, seed, label or None, split or None) -> a manifest CSV of new PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{name}.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for cls, seed, label, split in rows:
            path = folder / f"{name}-{cls}-{seed}.png"
            path.write_bytes(synthetic_png(cls, seed))
            writer.writerow([str(path), label or "", split or ""])
    return manifest


def make_project(
    ws: Workspace,
    folder: Path,
    *,
    n_labeled: int = 4,
    n_open: int = 10,
    n_test: int = 5,
    settings: dict | None = None,
    name: str = "tiny",
):
    """Per class: n_labeled labeled pool images, n_open unlabeled ones, n_test gold test ones."""
    project = ws.create_project(name, CLASSES, settings={**TINY, **(settings or {})})
    rows: list[tuple[int, int, str | None, str | None]] = []
    for cls, label in enumerate(CLASSES):
        rows += [(cls, seed, label, "pool") for seed in range(n_labeled)]
        rows += [(cls, 1000 + seed, None, "pool") for seed in range(n_open)]
        rows += [(cls, 2000 + seed, label, "test") for seed in range(n_test)]
    report = project.import_manifest(write_manifest(folder, rows, name=name))
    assert not report.rejected, report.rejected
    return project


def run_one(ws: Workspace, project) -> str:
    """Claim and run the queued round in this process (the worker test uses a real process)."""
    round_id = claim_round(ws.engine, worker="test:1")
    assert round_id is not None
    return run_round(ws.engine, round_id, data_dir=ws.data_dir, worker="test:1")


def test_round_trains_scores_and_changes_the_ranking(workspace: Workspace, tmp_path: Path):
    ws = workspace
    project = make_project(ws, tmp_path / "images")
    before = project.next_task("ana")
    assert before is not None and before.strategy == "cold_start"
    project.release(before.id, annotator="ana")

    info = project.request_round(requested_by="test")
    assert info.status == "queued"
    assert project.request_round().id == info.id  # one active round per project
    assert run_one(ws, project) == "succeeded"

    done = project.rounds()[-1]
    assert done.status == "succeeded" and done.phase == "done" and done.progress == 1.0
    assert done.n_labels == 4 * len(CLASSES)
    assert done.detail["annotation_watermark"] > 0
    assert set(done.detail["timings"]) >= {"loading", "training", "evaluating", "scoring"}
    assert done.device == "cpu"

    with read_session(ws.engine) as session:
        row = session.get(Round, done.id)
        metrics = round_queries.round_metrics(session, done.id)
        epochs = list(
            session.scalars(select(TrainingEpoch).where(TrainingEpoch.round_id == done.id))
        )
        scores = list(session.scalars(select(SampleScore).where(SampleScore.round_id == done.id)))
    assert [m.member for m in metrics] == [-1, 0, 1]
    ensemble = metrics[0]
    assert ensemble.eval_source == "test" and ensemble.n_eval == 5 * len(CLASSES)
    assert 0.0 <= ensemble.accuracy <= 1.0 and ensemble.accuracy_se >= 0.0
    assert ensemble.nll > 0 and ensemble.brier >= 0 and 0 <= ensemble.ece <= 1
    details = ensemble.details
    assert len(details["reliability"]["counts"]) == 15
    assert len(details["reliability"]["edges"]) == 16
    assert sum(details["reliability"]["counts"]) == ensemble.n_eval
    assert np.asarray(details["confusion"]).shape == (3, 3)
    assert np.asarray(details["confusion"]).sum() == ensemble.n_eval
    curve = details["risk_coverage"]
    assert 1 <= len(curve["risk"]) == len(curve["coverage"]) <= ensemble.n_eval
    assert curve["coverage"][-1] == 1.0 and 0.0 <= curve["aurc"] <= 1.0
    assert curve["risk"][-1] == pytest.approx(1.0 - ensemble.accuracy, abs=1e-6)
    assert (
        details["eval_predictions"]["true"] and len(details["eval_predictions"]["sample_ids"]) == 15
    )
    # 12 labels are one batch: epochs are raised so that training takes MIN_TRAIN_STEPS steps.
    assert done.detail["epochs_run"] == MIN_TRAIN_STEPS
    assert len(epochs) == 2 * MIN_TRAIN_STEPS  # members x epochs

    open_scores = [s for s in scores if s.rank is not None]
    labeled_scores = [s for s in scores if s.rank is None]
    assert len(open_scores) == 10 * len(CLASSES)  # every open pool sample is ranked
    assert len(labeled_scores) == 4 * len(CLASSES)  # labeled ones are scored, never ranked
    assert sorted(s.rank for s in open_scores) == list(range(1, len(open_scores) + 1))
    assert all(s.priority <= -1e8 for s in labeled_scores)
    assert all(len(s.mean_probs) == 3 and len(s.member_predictions) == 2 for s in scores)
    by_rank = sorted(open_scores, key=lambda s: s.rank)
    assert [s.mutual_information for s in by_rank] == sorted(
        (s.mutual_information for s in by_rank), reverse=True
    )
    assert row.checkpoint and Path(row.checkpoint, "model.safetensors").is_file()

    # From now on the queue serves by mutual information, and the log says so.
    task = project.next_task("ana")
    assert task.strategy == "bald" and task.round_id == done.id and task.rank == 1
    assert task.sample_id == by_rank[0].sample_id
    assert task.scores["mutual_information"] == pytest.approx(by_rank[0].mutual_information)

    # The checkpoint reloads (no pickle) and reproduces the stored predictions.
    loaded = rounds.load_ensemble(project)
    assert loaded is not None and loaded.members == 2
    from activelearn.ingest.cache import TensorCache
    from db.models import Sample

    with read_session(ws.engine) as session:
        refs = {
            sid: (shard, index)
            for sid, shard, index in session.execute(
                select(Sample.id, Sample.cache_shard, Sample.cache_index)
            )
        }
    cache = TensorCache(project.cache_dir, channels=1, image_size=SIZE)
    pixels = cache.load([refs[s.sample_id] for s in scores])
    reloaded = loaded.predict_proba(torch.from_numpy(pixels)).mean(0)  # (N, C)
    stored = torch.tensor([s.mean_probs for s in scores])
    assert torch.allclose(reloaded, stored.float(), atol=1e-3)
    frame = export.predictions_frame(project)
    assert len(frame) == len(scores) and "p_left" in frame.columns


def test_audit_samples_are_never_trained_on_and_are_the_eval_set(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", n_test=0, settings={"audit_share": 0.5})
    served = {"audit": 0}
    for _ in range(12):
        task = project.next_task("ana")
        served[task.strategy] = served.get(task.strategy, 0) + 1
        # The synthetic file name carries the class: label truthfully.
        cls = int(Path(task.image).name.split("-")[1])
        project.submit(task.id, label=CLASSES[cls], annotator="ana")
    assert served["audit"] > 0
    status = project.status()
    assert status.n_eval == served["audit"]

    project.request_round()
    assert run_one(ws, project) == "succeeded"
    done = project.rounds()[-1]
    with read_session(ws.engine) as session:
        from db import queries

        audit_ids = {r[0] for r in queries.samples_for_training(session, project.id, "eval")}
        trained_ids = {r[0] for r in queries.samples_for_training(session, project.id, "pool")}
        metric = session.get(RoundMetric, (done.id, -1))
        ranked = {
            s.sample_id
            for s in session.scalars(select(SampleScore).where(SampleScore.round_id == done.id))
        }
    assert audit_ids and not audit_ids & trained_ids
    assert done.n_labels == len(trained_ids)
    assert metric.eval_source == "audit" and metric.n_eval == len(audit_ids)
    assert set(metric.details["eval_predictions"]["sample_ids"]) == audit_ids
    assert not audit_ids & ranked  # audit samples are neither trained on nor scored as pool


def test_no_labels_is_refused_with_a_plain_reason_and_nothing_is_served_from_it(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", n_labeled=0, n_test=0)
    with pytest.raises(NotEnoughLabels, match="no labeled pool images"):
        project.request_round()
    assert project.rounds() == []
    assert project.status().current_round_id is None
    assert project.next_task("ana").strategy == "cold_start"


def test_labels_after_the_snapshot_count_toward_the_next_round(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings={"retrain_every": 3})
    queued = project.request_round()
    round_id = claim_round(ws.engine, worker="test:1")
    assert round_id == queued.id
    # Labels given after the claim but before the worker's snapshot are in this round.
    for _ in range(2):
        task = project.next_task("bo")
        project.submit(task.id, label="left", annotator="bo")
    assert run_round(ws.engine, round_id, data_dir=ws.data_dir, worker="test:1") == "succeeded"
    # Those labels were in the snapshot: nothing new since.
    assert project.status().labels_since_round == 0
    for _ in range(2):
        task = project.next_task("bo")
        project.submit(task.id, label="left", annotator="bo")
    assert project.status().labels_since_round == 2
    assert project.active_round() is None  # 2 < retrain_every
    task = project.next_task("bo")
    project.submit(task.id, label="left", annotator="bo")  # the third: after_label queues one
    active = project.active_round()
    assert active is not None and active.status == "queued"
    assert project.rounds()[-1].id != round_id


def test_after_label_respects_off_and_a_failed_round_is_not_requeued_per_label(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", n_labeled=0, settings={"retrain_every": 2})
    for label in ("top", "left"):
        task = project.next_task("cy")
        project.submit(task.id, label=label, annotator="cy")
    assert project.active_round() is not None
    project.cancel_round()
    assert project.rounds()[-1].status == "cancelled"
    assert triggers.after_label(project) is None  # the cancelled round's snapshot counts
    project.update_settings(retrain_every=0)
    for _ in range(3):
        task = project.next_task("cy")
        project.submit(task.id, label="top", annotator="cy")
    assert project.active_round() is None


def test_after_a_failed_round_the_next_automatic_one_waits_for_more_labels(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", n_labeled=0, settings={"retrain_every": 1})
    for label in ("top", "left"):  # the second label of a second class queues a round
        task = project.next_task("cy")
        project.submit(task.id, label=label, annotator="cy")
    queued = project.active_round()
    assert queued is not None
    round_id = claim_round(ws.engine, worker="test:1")
    with ws.engine.begin() as connection:
        session = Session(bind=connection)
        assert round_queries.finish_round(
            session, round_id, worker="test:1", status="failed", now=utcnow(), error="boom"
        )
        session.commit()
    # the failed round counts from the labels it was queued with (its watermark)
    for since in range(1, rounds.FAILED_ROUND_BACKOFF_LABELS):
        task = project.next_task("cy")
        project.submit(task.id, label="top", annotator="cy")
        assert project.active_round() is None, f"re-queued {since} labels after a failure"
    task = project.next_task("cy")
    project.submit(task.id, label="top", annotator="cy")
    assert project.active_round() is not None  # FAILED_ROUND_BACKOFF_LABELS since the failure


def test_the_worker_queues_the_round_that_labels_given_meanwhile_are_due(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", settings={"retrain_every": 0})
    queued = project.request_round()
    assert (
        run_round(ws.engine, claim_round(ws.engine, worker="w"), data_dir=ws.data_dir, worker="w")
        == "succeeded"
    )
    for _ in range(2):  # given while no round could be queued for them
        task = project.next_task("bo")
        project.submit(task.id, label="left", annotator="bo")
    project.update_settings(retrain_every=2)
    assert project.active_round() is None
    worker_loop._queue_follow_up(ws, queued.id)
    follow_up = project.active_round()
    assert follow_up is not None and follow_up.id != queued.id
    worker_loop._queue_follow_up(ws, queued.id)  # nothing new beyond that: no second one
    assert [r.id for r in project.rounds()].count(follow_up.id) == 1
    assert sum(r.status == "queued" for r in project.rounds()) == 1


def test_rounds_older_than_the_newest_three_lose_scores_and_checkpoint_but_keep_metrics(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images")
    done = []
    for _ in range(rounds.KEPT_ROUND_OUTPUTS + 1):
        project.request_round()
        round_id = claim_round(ws.engine, worker="w")
        assert run_round(ws.engine, round_id, data_dir=ws.data_dir, worker="w") == "succeeded"
        done.append(round_id)
    with read_session(ws.engine) as session:
        scored = {
            r: session.scalar(
                select(func.count()).select_from(SampleScore).where(SampleScore.round_id == r)
            )
            for r in done
        }
        checkpoints = {r: session.get(Round, r).checkpoint for r in done}
        metric_rounds = set(session.scalars(select(RoundMetric.round_id)))
        summaries = set(session.scalars(select(RoundPoolSummary.round_id)))
    oldest, kept = done[0], done[1:]
    assert scored[oldest] == 0 and checkpoints[oldest] is None
    assert all(scored[r] > 0 and checkpoints[r] for r in kept)
    assert not list((Path(ws.data_dir) / "checkpoints").glob(f"project-*/round-{oldest}"))
    assert all(Path(checkpoints[r]).is_dir() for r in kept)
    assert metric_rounds == set(done) and summaries == set(done)  # curves over every round
    with pytest.raises(NothingToExport, match="removed when newer rounds finished"):
        export.predictions_frame(project, oldest)
    assert len(export.predictions_frame(project, kept[0])) > 0
    assert project.next_task("bo").strategy == "bald"  # the newest round still ranks the pool


def test_batch_strategy_priorities_put_the_selected_batch_first():
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 50, 4, generator=generator), dim=-1)  # (M, N, C)
    rankable = torch.ones(50, dtype=torch.bool)
    rankable[:5] = False
    table = score_pool(
        probs, strategy="batchbald", acquisition_batch=6, rankable=rankable, generator=generator
    )
    first = torch.argsort(table.rank.masked_fill(~rankable, 10**6))[:6]
    assert (table.priority[first] >= 1e6).all()
    assert (table.priority[:5] == -1e9).all() and (table.rank[:5] == 0).all()
    rest = table.priority[rankable & (table.priority < 1e6)]
    assert torch.allclose(rest, table.mutual_information[rankable & (table.priority < 1e6)])
    random_table = score_pool(probs, strategy="random", acquisition_batch=6)
    assert sorted(random_table.rank.tolist()) == list(range(1, 51))


def test_a_queued_round_takes_the_settings_current_when_it_starts(
    workspace: Workspace, tmp_path: Path
):
    ws = workspace
    project = make_project(ws, tmp_path / "images", settings={"members": 3, "strategy": "bald"})
    queued = project.request_round()
    assert queued.strategy == "bald"
    project.update_settings(members=2, strategy="entropy")  # the lead changes them meanwhile
    assert run_one(ws, project) == "succeeded"
    with read_session(ws.engine) as session:
        row = session.get(Round, queued.id)
        assert row is not None and row.strategy == "entropy" and row.config["members"] == 2
        members = {
            m
            for (m,) in session.execute(
                select(RoundMetric.member).where(RoundMetric.round_id == queued.id)
            )
        }
    assert members == {-1, 0, 1}
    assert project.rounds()[-1].strategy == "entropy"
    # The label page names the ranking it serves, not a setting changed after the round.
    project.update_settings(strategy="margin")
    task = project.next_task("ana")
    assert task is not None and task.strategy == "entropy" and task.rank == 1


def test_a_round_needs_labels_of_two_classes_before_it_replaces_the_cold_start(
    sqlite_workspace: Workspace, tmp_path: Path
):
    ws = sqlite_workspace
    project = make_project(ws, tmp_path / "images", n_labeled=0)
    task = project.next_task("ana")
    project.submit(task.id, label="left", annotator="ana")
    with pytest.raises(NotEnoughLabels, match="every label is 'left'"):
        project.request_round()
    task = project.next_task("ana")
    project.submit(task.id, label="top", annotator="ana")
    project.request_round()
    project.undo(annotator="ana")  # withdrawn before the worker starts: one class again
    assert run_one(ws, project) == "failed"
    assert "at least 2 classes" in (project.rounds()[-1].error or "")
    served = project.next_task("ana")
    assert served is not None and served.strategy in ("cold_start", "undo")
    project.release(served.id, annotator="ana")
    other = project.next_task("bo")
    assert other is not None and other.strategy == "cold_start"
