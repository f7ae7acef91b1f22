"""The dashboard's data services on a real SQLite project with two finished rounds.

`build_dashboard_project` writes the rows the rounds worker would (rounds, metrics, training
epochs, sample scores, a checkpoint) straight through the db models; the UI tests reuse it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete, select, update

from activelearn import Project, Workspace
from activelearn.errors import UnknownTask
from activelearn.services import dashboard as data
from activelearn.services import round_runner
from activelearn.services.dashboard import pool as pool_section
from db.engine import read_session, write_session
from db.models import (
    Annotation,
    Round,
    RoundMetric,
    RoundPoolSummary,
    Sample,
    SampleScore,
    TrainingEpoch,
)
from tests.conftest import write_images

CLASSES = ["cat", "dog", "<script>alert(1)</script>"]
N_IMAGES = 24
MEMBERS = 2


@dataclass(frozen=True)
class DashboardFixture:
    project: Project
    round_ids: tuple[int, int]
    planted_error: int  # labeled "cat", every member says "dog" with confidence
    correct_confident: int  # labeled "dog", every member says "dog"
    ambiguous: int  # labeled "cat", members split
    labeled: tuple[int, ...]
    checkpoint: Path


def _details(n_classes: int, rng: np.random.Generator) -> dict:
    edges = np.linspace(0, 1, 16).tolist()
    counts = [0] * 10 + [2, 3, 4, 5, 6]
    confidence = [None] * 10 + [0.70, 0.75, 0.85, 0.9, 0.97]
    accuracy = [None] * 10 + [0.5, 0.67, 0.75, 0.8, 1.0]
    n_eval = 20
    conf = rng.uniform(0.4, 1.0, n_eval).round(4)
    true = rng.integers(0, n_classes, n_eval)
    correct = rng.uniform(size=n_eval) < conf
    predicted = np.where(correct, true, (true + 1) % n_classes)
    confusion = np.zeros((n_classes, n_classes), dtype=int)
    for t, p in zip(true, predicted, strict=True):
        confusion[t, p] += 1
    order = np.argsort(-conf)
    coverage = (np.arange(1, n_eval + 1) / n_eval).tolist()
    risk = (1 - np.cumsum(correct[order]) / np.arange(1, n_eval + 1)).tolist()
    return {
        "reliability": {
            "edges": edges,
            "confidence": confidence,
            "accuracy": accuracy,
            "counts": counts,
        },
        "confusion": confusion.tolist(),
        "risk_coverage": {"coverage": coverage, "risk": risk, "aurc": float(np.mean(risk))},
        "eval_predictions": {
            "sample_ids": list(range(n_eval)),
            "confidence": conf.tolist(),
            "correct": correct.tolist(),
            "predicted": predicted.tolist(),
            "true": true.tolist(),
        },
    }


def build_dashboard_project(
    ws: Workspace,
    tmp_path: Path,
    *,
    accuracies: tuple[float, float] = (0.6, 0.75),
) -> DashboardFixture:
    """A project with 24 PNGs, 8 labels from two annotators (two samples labeled by both) and
    two succeeded rounds with metrics, training curves, scores and a checkpoint."""
    project = ws.create_project(
        "digits", CLASSES, settings={"audit_share": 0.0, "retrain_every": 0}
    )
    project.import_images(write_images(tmp_path / "images", N_IMAGES)[0].parent)
    # ana labels six, ben two; ben then labels two of ana's (one agreeing, one not).
    plan = [
        ("ana", "cat"),  # 0: planted wrong label
        ("ana", "dog"),  # 1: correct and confident
        ("ana", "cat"),  # 2: ambiguous (members split)
        ("ana", "dog"),
        ("ana", CLASSES[2]),
        ("ana", "cat"),
        ("ben", "dog"),
        ("ben", CLASSES[2]),
    ]
    labeled: list[int] = []
    for annotator, label in plan:
        task = project.next_task(annotator)
        assert task is not None
        project.submit(task.id, label=label, annotator=annotator)
        labeled.append(task.sample_id)
    project.relabel(labeled[3], "dog", "ben")  # agrees with ana
    project.relabel(labeled[5], "dog", "ben")  # disagrees with ana ("cat")
    # ben's relabel of sample 5 makes "dog" the current label (the newest wins); keep "cat" for
    # the flag checks below by reading labels from the database, not from the plan.

    from activelearn.core.ensemble import Ensemble, EnsembleConfig

    checkpoint = ws.data_dir / "checkpoints" / f"project-{project.id}" / "round-2"
    Ensemble(
        EnsembleConfig(members=MEMBERS, widths=(2, 2), hidden=4),
        in_channels=1,
        n_classes=len(CLASSES),
        image_size=28,
    ).save(checkpoint)

    rng = np.random.default_rng(0)
    now = datetime(2026, 1, 1, 12, 0)
    with write_session(ws.engine) as session:
        samples = session.execute(
            select(Sample.id, Sample.label).where(Sample.project_id == project.id)
        ).all()
        label_of = {int(s): lbl for s, lbl in samples}
        round_ids = []
        for number, (n_labels, accuracy) in enumerate(zip((4, 8), accuracies, strict=True)):
            row = Round(
                project_id=project.id,
                status="succeeded",
                phase="done",
                progress=1.0,
                detail={},
                n_labels=n_labels,
                strategy="bald",
                config={},
                cancel_requested=False,
                checkpoint=str(checkpoint) if number == 1 else None,
                created_at=now + timedelta(hours=number),
                finished_at=now + timedelta(hours=number, minutes=5),
            )
            session.add(row)
            session.flush()
            round_ids.append(row.id)
            for member in (-1, *range(MEMBERS)):
                offset = 0.0 if member == -1 else -0.05 * (member + 1)
                session.add(
                    RoundMetric(
                        round_id=row.id,
                        member=member,
                        eval_source="test",
                        n_eval=20,
                        accuracy=accuracy + offset,
                        accuracy_se=0.03,
                        nll=1.0 - accuracy + 0.1,
                        nll_se=0.05,
                        brier=0.4,
                        brier_se=0.02,
                        ece=0.1 - 0.02 * number,
                        details=_details(len(CLASSES), rng) if member == -1 else {},
                    )
                )
                if member >= 0:
                    for epoch in range(3):
                        session.add(
                            TrainingEpoch(
                                round_id=row.id,
                                member=member,
                                epoch=epoch,
                                train_loss=1.0 / (epoch + 1) + 0.01 * member,
                                val_loss=1.1 / (epoch + 1),
                            )
                        )
            rank = 0
            for sample_id, label in sorted(label_of.items()):
                probs = rng.dirichlet(np.ones(len(CLASSES)))
                members_top = [int(rng.integers(0, len(CLASSES))) for _ in range(MEMBERS)]
                if sample_id in (labeled[0], labeled[1]):
                    # labeled[0] is "cat" (planted), labeled[1] "dog": all members say "dog"
                    probs, members_top = np.array([0.03, 0.94, 0.03]), [1, 1]
                elif sample_id == labeled[2]:  # labeled "cat", members split
                    probs, members_top = np.array([0.30, 0.65, 0.05]), [1, 0]
                elif label is not None:  # the other labeled ones agree with their label
                    index = CLASSES.index(label)
                    probs = np.full(len(CLASSES), 0.05)
                    probs[index] = 0.9
                    members_top = [index] * MEMBERS
                # Out-of-sample judgement (services.honesty): the planted label is judged wrong.
                issue, suggested = (None, None) if label is None else (0.02, CLASSES.index(label))
                if sample_id == labeled[0]:
                    issue, suggested = 0.97, 1
                elif sample_id == labeled[2]:
                    issue, suggested = 0.35, 1  # doubtful, under the flag line
                entropy = float(-(probs * np.log(probs)).sum())
                expected = entropy * float(rng.uniform(0.3, 0.9))
                is_labeled = label is not None
                if not is_labeled:
                    rank += 1
                session.add(
                    SampleScore(
                        round_id=row.id,
                        sample_id=sample_id,
                        mutual_information=entropy - expected,
                        predictive_entropy=entropy,
                        expected_entropy=expected,
                        variance=float(rng.uniform(0, 0.2)),
                        margin=float(rng.uniform(0, 1)),
                        predicted_class=int(np.argmax(probs)),
                        confidence=float(probs.max()),
                        mean_probs=[round(float(p), 4) for p in probs],
                        member_predictions=members_top,
                        rank=None if is_labeled else rank,
                        priority=entropy - expected,
                        label_issue=issue,
                        suggested_class=suggested,
                        ood_score=None if is_labeled else float(rng.uniform(0, 1)),
                    )
                )
    return DashboardFixture(
        project=project,
        round_ids=(round_ids[0], round_ids[1]),
        planted_error=labeled[0],
        correct_confident=labeled[1],
        ambiguous=labeled[2],
        labeled=tuple(labeled),
        checkpoint=checkpoint,
    )


@pytest.fixture
def fixture(sqlite_workspace: Workspace, tmp_path: Path) -> DashboardFixture:
    return build_dashboard_project(sqlite_workspace, tmp_path)


# ---------------------------------------------------------------- overview and curves


def test_overview_lists_the_succeeded_rounds(fixture: DashboardFixture) -> None:
    summary = data.overview(fixture.project)
    assert [r.id for r in summary.rounds] == list(fixture.round_ids)
    assert summary.latest is not None and summary.latest.n_labels == 8
    assert summary.previous is not None and summary.previous.id == fixture.round_ids[0]
    assert summary.classes == tuple(CLASSES)


def test_learning_curves_hold_ensemble_and_members(fixture: DashboardFixture) -> None:
    curves = data.learning_curves(fixture.project)
    assert len(curves.curves) == 2 * (MEMBERS + 1)
    ensemble = curves.curves[curves.curves["member"] == -1]
    assert ensemble["n_labels"].tolist() == [4, 8]
    assert ensemble["accuracy"].tolist() == pytest.approx([0.6, 0.75])
    assert curves.simulation is None


def test_simulation_curve_reads_the_random_strategy(fixture: DashboardFixture) -> None:
    folder = data.simulation_dir(fixture.project)
    folder.mkdir(parents=True)
    rows = []
    for strategy, base in (("random", 0.5), ("bald", 0.7)):
        for repeat in range(3):
            for round_number, n_labels in enumerate((10, 20)):
                rows.append(
                    {
                        "strategy": strategy,
                        "repeat": repeat,
                        "round": round_number,
                        "n_labels": n_labels,
                        "test_accuracy": base + 0.1 * round_number + 0.01 * repeat,
                        "test_nll": 1.0,
                        "test_ece": 0.1,
                        "seconds": 1.0,
                    }
                )
    pd.DataFrame(rows).to_csv(folder / "sim.csv", index=False)
    (folder / "broken.csv").write_text("not,a\nsimulation")
    curves = data.learning_curves(fixture.project)
    assert curves.simulation is not None
    assert curves.simulation["n_labels"].tolist() == [10, 20]
    assert curves.simulation["accuracy"].tolist() == pytest.approx([0.51, 0.61])
    # standard error over 3 repeats of (0, 0.01, 0.02): std 0.01 / sqrt(3)
    assert curves.simulation["accuracy_se"].tolist() == pytest.approx([0.01 / math.sqrt(3)] * 2)
    assert curves.simulation_files == ("sim.csv",)


def test_training_curves_of_a_round(fixture: DashboardFixture) -> None:
    frame = data.training_curves(fixture.project, fixture.round_ids[1])
    assert len(frame) == MEMBERS * 3
    assert frame[frame["member"] == 0]["train_loss"].tolist() == pytest.approx([1.0, 0.5, 1 / 3])


def test_an_unknown_round_is_refused(fixture: DashboardFixture) -> None:
    with pytest.raises(UnknownTask):
        data.training_curves(fixture.project, 9999)


# ---------------------------------------------------------------- the pool


def test_pool_view_aggregates_match_numpy(fixture: DashboardFixture) -> None:
    latest, previous = fixture.round_ids[1], fixture.round_ids[0]
    view = data.pool_view(fixture.project, latest, previous)
    with read_session(fixture.project.engine) as session:
        rows = session.execute(
            select(
                SampleScore.round_id, SampleScore.mutual_information, SampleScore.confidence
            ).where(SampleScore.rank.is_not(None))
        ).all()
    mi = {r: np.array([m for rr, m, _ in rows if rr == r]) for r in (latest, previous)}
    assert view.n_pool == N_IMAGES - len(fixture.labeled) == len(mi[latest])
    hist = view.histograms["mutual_information"]
    expected_latest, _ = np.histogram(mi[latest], bins=np.array(hist.edges))
    expected_previous, _ = np.histogram(mi[previous], bins=np.array(hist.edges))
    assert list(hist.latest) == expected_latest.tolist()
    assert hist.previous is not None and list(hist.previous) == expected_previous.tolist()
    # The scatter holds every pool sample here (the pool is small), never a labeled one.
    assert sorted(view.points["sample_id"]) == sorted(
        set(range(1, N_IMAGES + 1)) - set(fixture.labeled)
    )
    top = view.top_mutual_information["mutual_information"].tolist()
    assert top == sorted(mi[latest], reverse=True)[: data.GALLERY_SIZE]
    # Abstention at a threshold: the share below it, and the mean confidence of the rest.
    confidence = np.array([c for r, _, c in rows if r == latest])
    abstained, expected = data.abstention_at(view, 0.5)
    assert abstained == pytest.approx(float((confidence < 0.5).mean()))
    kept = confidence[confidence >= 0.5]
    assert expected == pytest.approx(float(kept.mean()) if kept.size else None)
    assert data.abstention_at(view, 0.0) == (0.0, pytest.approx(float(confidence.mean())))


def test_ood_gallery_ranks_by_ood_score(fixture: DashboardFixture) -> None:
    view = data.pool_view(fixture.project, fixture.round_ids[1], None)
    assert view.ood_source == "ood_score"
    with read_session(fixture.project.engine) as session:
        stored = sorted(
            (
                s.ood_score
                for s in session.scalars(
                    select(SampleScore).where(
                        SampleScore.round_id == fixture.round_ids[1], SampleScore.rank.is_not(None)
                    )
                )
            ),
            reverse=True,
        )
    assert view.out_of_distribution["ood_score"].tolist() == stored[: data.GALLERY_SIZE]


def test_ood_gallery_of_a_round_without_ood_scores_is_the_proxy(
    fixture: DashboardFixture,
) -> None:
    with write_session(fixture.project.engine) as session:
        session.execute(update(SampleScore).values(ood_score=None))
    view = data.pool_view(fixture.project, fixture.round_ids[1], None)
    assert view.ood_source == "proxy" and view.ood_mi_floor is not None
    assert (view.out_of_distribution["mutual_information"] >= view.ood_mi_floor).all()
    entropy = view.out_of_distribution["predictive_entropy"].tolist()
    assert entropy == sorted(entropy, reverse=True)


def assert_same_view(got: data.PoolView, expected: data.PoolView) -> None:
    """Field by field: frames with their dtypes, everything else exactly (no tolerance)."""
    for spec in fields(data.PoolView):
        a, b = getattr(got, spec.name), getattr(expected, spec.name)
        if isinstance(b, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        else:
            assert a == b, spec.name


def stored_summary(project: Project, round_id: int) -> RoundPoolSummary | None:
    with read_session(project.engine) as session:
        return session.get(RoundPoolSummary, round_id)


def test_stored_pool_summary_equals_the_fresh_computation(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A scatter sample and galleries smaller than the 16-sample pool, as at full scale.
    monkeypatch.setattr(pool_section, "SCATTER_POINTS", 5)
    monkeypatch.setattr(pool_section, "SCATTER_TOP", 2)
    monkeypatch.setattr(pool_section, "GALLERY_SIZE", 3)
    built = build_dashboard_project(workspace, tmp_path)
    project = built.project
    latest, previous = built.round_ids[1], built.round_ids[0]
    fresh = data.compute_pool_view(project, latest, previous)
    assert 5 <= len(fresh.points) <= 5 + 2 < fresh.n_pool  # 5 drawn plus the top 2 by MI
    assert stored_summary(project, latest) is None  # rounds written without the worker

    first = data.pool_view(project, latest, previous)  # the fallback: computed, then stored
    row = stored_summary(project, latest)
    assert row is not None and row.previous_round_id == previous
    assert row.version == data.POOL_SUMMARY_VERSION
    assert_same_view(first, fresh)

    # Read back, not recomputed: with the round's scores gone, the summary still answers.
    with write_session(project.engine) as session:
        session.execute(delete(SampleScore).where(SampleScore.round_id == latest))
    again = data.pool_view(project, latest, previous)
    assert_same_view(again, fresh)
    assert data.compute_pool_view(project, latest, previous).n_pool == 0
    # The slider is answered from the stored confidence profile, at every step.
    for step in range(data.CONFIDENCE_BINS + 1):
        threshold = step / data.CONFIDENCE_BINS
        assert data.abstention_at(again, threshold) == data.abstention_at(fresh, threshold)


def test_a_summary_answers_only_its_own_question(
    fixture: DashboardFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = fixture.project
    latest, previous = fixture.round_ids[1], fixture.round_ids[0]
    data.pool_view(project, latest, previous)
    with write_session(project.engine) as session:  # mark the stored copy
        row = session.get(RoundPoolSummary, latest)
        assert row is not None
        session.execute(
            update(RoundPoolSummary)
            .where(RoundPoolSummary.round_id == latest)
            .values(summary={**row.summary, "n_pool": 999})
        )
    true_size = N_IMAGES - len(fixture.labeled)
    assert data.pool_view(project, latest, previous).n_pool == 999  # read from the store
    # Another threshold for the informative share: computed, and the stored copy left alone.
    custom = data.StoppingThresholds(mutual_information=0.05)
    assert data.pool_view(project, latest, previous, thresholds=custom).n_pool == true_size
    assert data.pool_view(project, latest, previous).n_pool == 999
    # An older summary format: recomputed and replaced.
    monkeypatch.setattr(pool_section, "POOL_SUMMARY_VERSION", data.POOL_SUMMARY_VERSION + 1)
    assert data.pool_view(project, latest, previous).n_pool == true_size
    assert data.pool_view(project, latest, previous).n_pool == true_size
    # Compared with another round (here none): recomputed and replaced, overlay gone.
    alone = data.pool_view(project, latest, None)
    assert alone.stability is None
    assert all(h.previous is None for h in alone.histograms.values())
    row = stored_summary(project, latest)
    assert row is not None and row.previous_round_id is None
    assert_same_view(alone, data.compute_pool_view(project, latest, None))


@pytest.mark.usefixtures("one_torch_thread")
def test_a_finished_round_stores_its_pool_summary(workspace: Workspace, tmp_path: Path) -> None:
    """Two real rounds through the worker's run_round: each stores its summary, the second
    compared with the first, equal to a fresh computation."""
    from tests.services.test_rounds import make_project, run_one

    project = make_project(workspace, tmp_path / "images", n_open=6)
    project.request_round(requested_by="test")
    assert run_one(workspace, project) == "succeeded"
    task = project.next_task("ana")
    assert task is not None
    project.submit(task.id, label=project.classes[0], annotator="ana")
    project.request_round(requested_by="test")
    assert run_one(workspace, project) == "succeeded"
    first, second = (r.id for r in data.overview(project).rounds)
    row = stored_summary(project, first)
    assert row is not None and row.previous_round_id is None
    row = stored_summary(project, second)
    assert row is not None and row.previous_round_id == first
    assert row.version == data.POOL_SUMMARY_VERSION
    stored = data.pool_view(project, second, first)
    fresh = data.compute_pool_view(project, second, first)
    assert_same_view(stored, fresh)
    assert stored.n_pool == 3 * 6 - 1 and stored.stability is not None


def test_a_starting_worker_backfills_the_latest_rounds_summary(fixture: DashboardFixture) -> None:
    """Rounds finished before summaries existed: the worker stores the latest one's at start."""
    from activelearn.services.worker_loop import WorkerConfig, run_worker

    project = fixture.project
    older, latest = fixture.round_ids
    assert stored_summary(project, latest) is None
    ws = project.workspace
    assert run_worker(WorkerConfig(url=ws.url, data_dir=ws.data_dir, once=True)) == 0
    assert stored_summary(project, latest) is not None
    assert stored_summary(project, older) is None  # only the one the dashboard opens on
    assert data.backfill_pool_summaries(project.engine) == []  # nothing left to do
    assert_same_view(
        data.pool_view(project, latest, older), data.compute_pool_view(project, latest, older)
    )


@pytest.mark.usefixtures("one_torch_thread")
def test_a_failing_summary_never_fails_the_round(
    sqlite_workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary is a cache: if computing it breaks, the round stays succeeded and served, and
    the first dashboard visitor computes and stores it instead."""
    from tests.services.test_rounds import make_project, run_one

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("summary failed")

    monkeypatch.setattr(round_runner, "store_pool_summary", broken)  # where the runner calls it
    project = make_project(sqlite_workspace, tmp_path / "images", n_open=4)
    project.request_round(requested_by="test")
    assert run_one(sqlite_workspace, project) == "succeeded"
    (round_ref,) = data.overview(project).rounds
    assert stored_summary(project, round_ref.id) is None
    task = project.next_task("ana")
    assert task is not None and task.round_id == round_ref.id  # the new ranking is served
    project.release(task.id, annotator="ana")
    view = data.pool_view(project, round_ref.id, None)
    assert view.n_pool == 3 * 4 and stored_summary(project, round_ref.id) is not None


def test_round_details_and_eval_accuracy(fixture: DashboardFixture) -> None:
    details = data.round_details(fixture.project, fixture.round_ids[1])
    assert details.n_eval == 20 and details.eval_source == "test"
    assert len(details.reliability["edges"]) == 16
    assert np.array(details.confusion).sum() == 20
    confidence = np.array(details.eval_confidence)
    correct = np.array(details.eval_correct)
    accuracy, coverage = data.eval_accuracy_above(details, 0.7)
    assert coverage == pytest.approx(float((confidence >= 0.7).mean()))
    assert accuracy == pytest.approx(float(correct[confidence >= 0.7].mean()))


# ---------------------------------------------------------------- labels and people


def test_label_stats_counts_and_agreement(fixture: DashboardFixture) -> None:
    stats = data.label_stats(fixture.project)
    per_class = stats.per_class.groupby("label")["count"].sum().to_dict()
    # current labels: cat (planted), dog, cat (ambiguous), dog, script, dog (ben's relabel
    # replaced ana's cat), dog, script
    assert per_class == {"cat": 2, "dog": 4, CLASSES[2]: 2}
    # live labels: ben's two corrections replaced two of ana's six (one sample, one label)
    assert stats.per_hour.groupby("annotator")["count"].sum().to_dict() == {"ana": 4, "ben": 4}
    assert stats.annotators == ("ana", "ben")
    assert stats.n_multi == 2 and stats.n_unanimous == 1
    assert stats.agreement[0][1] == pytest.approx(0.5)
    assert stats.shared[0][1] == 2


def test_annotator_agreement_three_annotators() -> None:
    rows = [
        (1, "a", "x"),
        (1, "b", "x"),
        (1, "c", "y"),
        (2, "a", "x"),
        (2, "b", "y"),
        (3, "a", "x"),  # only one annotator: not counted
    ]
    names, agreement, shared, n_multi, unanimous = data.annotator_agreement(rows)
    assert names == ("a", "b", "c")
    assert n_multi == 2 and unanimous == 0
    assert agreement[0][1] == pytest.approx(0.5) and shared[0][1] == 2
    assert agreement[0][2] == pytest.approx(0.0) and shared[0][2] == 1
    assert agreement[1][2] == pytest.approx(0.0)
    assert agreement[0][0] == pytest.approx(1.0)


# ---------------------------------------------------------------- label errors


def test_label_error_finder_flags_the_planted_label_only(fixture: DashboardFixture) -> None:
    found = data.find_label_errors(fixture.project, fixture.round_ids[1])
    assert [e.sample_id for e in found] == [fixture.planted_error]
    error = found[0]
    assert error.label == "cat" and error.suggested == "dog"
    assert error.score == pytest.approx(0.97) and error.label_probability == pytest.approx(0.03)
    frame = fixture.project.label_issues(fixture.round_ids[1])
    assert list(frame.columns) == ["sample_id", "label", "suggested_label", "score", "annotator"]
    assert frame["sample_id"].iloc[0] == fixture.planted_error  # highest score first
    assert frame["score"].is_monotonic_decreasing
    assert set(frame["sample_id"]) == set(fixture.labeled)  # every label the round judged
    assert frame["score"].iloc[1] == pytest.approx(0.35)  # the doubtful one next


def test_rank_label_issues_rules() -> None:
    classes = ["a", "b", "c"]
    rows = [
        (1, "p1", "a", 1, 0.94, "ana"),  # flagged
        (2, "p2", "a", 1, 0.45, "ana"),  # under the line
        (3, "p3", "b", 1, 0.44, "bo"),  # under the line
        (4, "p4", "zzz", 1, 0.94, "bo"),  # label no longer a class
        (5, "p5", "c", 0, None, "bo"),  # not judged
        (7, "p7", "c", 0, 0.99, None),  # flagged, more suspicious
    ]
    found = data.rank_label_issues(rows, classes=classes, min_score=0.5)
    assert [(e.sample_id, e.suggested, e.annotator) for e in found] == [
        (7, "a", None),
        (1, "b", "ana"),
    ]
    assert [e.sample_id for e in data.rank_label_issues(rows, classes=classes)] == [7, 1, 2, 3]


def test_send_back_for_review_returns_the_sample_to_the_queue(fixture: DashboardFixture) -> None:
    project = fixture.project
    sample_id = fixture.planted_error
    withdrawn = data.send_back_for_review(project, sample_id, by="lead")
    assert withdrawn == 1
    with read_session(project.engine) as session:
        sample = session.get(Sample, sample_id)
        assert sample is not None and sample.status == "open" and sample.label is None
        history = session.scalars(select(Annotation).where(Annotation.sample_id == sample_id))
        assert [(a.label, a.superseded) for a in history] == [("cat", True)]
    # no longer flagged: it has no label now
    assert data.find_label_errors(project, fixture.round_ids[1]) == []
    # and the queue serves it again (its score row is there, so it is ranked like the rest)
    served = set()
    for _ in range(N_IMAGES):
        task = project.next_task("carl")
        if task is None or task.sample_id == sample_id:
            served.add(task.sample_id if task else None)
            break
        served.add(task.sample_id)
        project.skip(task.id, annotator="carl")
    assert sample_id in served


def test_send_back_of_an_unknown_sample_is_refused(fixture: DashboardFixture) -> None:
    with pytest.raises(UnknownTask):
        data.send_back_for_review(fixture.project, 10_000, by="lead")


# ---------------------------------------------------------------- stopping advice


def _curve(points: list[tuple[int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "member": [-1] * len(points),
            "n_labels": [n for n, _ in points],
            "accuracy": [a for _, a in points],
            "accuracy_se": [0.01] * len(points),
        }
    )


def test_stopping_advice_changes_when_the_curve_flattens() -> None:
    steep = _curve([(100, 0.60), (200, 0.70), (300, 0.78), (400, 0.84)])
    flat = _curve(
        [
            (100, 0.60),
            (200, 0.70),
            (300, 0.90),
            (400, 0.901),
            (500, 0.9012),
            (600, 0.9015),
            (700, 0.9016),
        ]
    )
    settled = {"informative_share": 0.005, "stability": 0.995}
    assert data.advise_stopping(steep, **settled).verdict == "keep labeling"
    advice = data.advise_stopping(flat, **settled)
    assert advice.verdict == "stop"
    assert advice.gain_per_100 is not None and abs(advice.gain_per_100) < 0.002
    # Flat, but the members still disagree on much of the pool: not yet a stop.
    unsettled = data.advise_stopping(flat, informative_share=0.3, stability=0.9)
    assert unsettled.verdict == "diminishing returns"
    assert "disagree" in unsettled.message
    # Slowing: about half a point per 100 labels.
    slowing = _curve([(100, 0.80), (200, 0.805), (300, 0.81), (400, 0.815)])
    assert data.advise_stopping(slowing, **settled).verdict == "diminishing returns"


def test_stopping_advice_edge_cases() -> None:
    one = _curve([(100, 0.6)])
    assert data.advise_stopping(one, informative_share=None, stability=None).verdict == (
        "keep labeling"
    )
    steep = _curve([(100, 0.6), (200, 0.8)])
    exhausted = data.advise_stopping(steep, informative_share=0.5, stability=0.5, pool_left=0)
    assert exhausted.verdict == "stop" and "exhausted" in exhausted.reasons[0]


def test_stopping_advice_on_the_project(fixture: DashboardFixture) -> None:
    curves = data.learning_curves(fixture.project).curves
    view = data.pool_view(fixture.project, fixture.round_ids[1], fixture.round_ids[0])
    advice = data.stopping_advice(fixture.project, curves, view)
    # 0.6 -> 0.75 over 4 labels is steep
    assert advice.verdict == "keep labeling"
    assert advice.gain_per_100 == pytest.approx(0.15 / 4 * 100)
    # the fixture draws each round's predictions independently: compare with a direct count
    with read_session(fixture.project.engine) as session:
        rows = session.execute(
            select(SampleScore.round_id, SampleScore.sample_id, SampleScore.predicted_class).where(
                SampleScore.rank.is_not(None)
            )
        ).all()
    predicted = {(r, s): c for r, s, c in rows}
    latest, previous = fixture.round_ids[1], fixture.round_ids[0]
    shared = [s for r, s in predicted if r == latest and (previous, s) in predicted]
    same = sum(predicted[(latest, s)] == predicted[(previous, s)] for s in shared)
    assert advice.stability == pytest.approx(same / len(shared))
    mi = [m for r, m in session_mi(fixture, latest)]
    assert advice.informative_share == pytest.approx(float(np.mean(np.array(mi) > 0.1)))


def session_mi(fixture: DashboardFixture, round_id: int) -> list[tuple[int, float]]:
    with read_session(fixture.project.engine) as session:
        rows = session.execute(
            select(SampleScore.sample_id, SampleScore.mutual_information).where(
                SampleScore.round_id == round_id, SampleScore.rank.is_not(None)
            )
        ).all()
    return [(int(s), float(m)) for s, m in rows]
