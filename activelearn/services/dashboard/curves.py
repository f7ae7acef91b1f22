"""Dashboard sections 1 and 2: learning curves (and the simulated baseline), training curves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from activelearn.services.dashboard.common import METRICS, SIMULATION_STRATEGY, check_round, log
from db import dashboard as dash_queries
from db.engine import read_session

if TYPE_CHECKING:
    from activelearn.services.workspace import Project


# ---------------------------------------------------------------- 1. learning curves


@dataclass(frozen=True)
class LearningCurves:
    # columns: round_id, n_labels, member (-1 = ensemble), eval_source, n_eval, accuracy,
    # accuracy_se, nll, nll_se, brier, brier_se, ece, learner (the round's `learner` setting)
    curves: pd.DataFrame
    # columns: n_labels, accuracy, accuracy_se, nll, nll_se, ece, ece_se, repeats; None if no file
    simulation: pd.DataFrame | None
    simulation_files: tuple[str, ...] = ()


METRIC_COLUMNS = [
    "round_id",
    "n_labels",
    "member",
    "eval_source",
    "n_eval",
    "accuracy",
    "accuracy_se",
    "nll",
    "nll_se",
    "brier",
    "brier_se",
    "ece",
]


def learning_curves(project: Project) -> LearningCurves:
    with read_session(project.engine) as session:
        rows = dash_queries.metric_rows(session, project.id)
        learners = dash_queries.round_learners(session, project.id)
    curves = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    numeric = [c for c in METRIC_COLUMNS if c != "eval_source"]
    curves[numeric] = curves[numeric].apply(pd.to_numeric, errors="coerce")
    # Rounds from before the learner setting trained the CNN ensemble, the only learner then.
    curves["learner"] = [learners.get(int(r)) or "cnn" for r in curves["round_id"]]
    simulation, files = simulation_curve(project)
    return LearningCurves(curves=curves, simulation=simulation, simulation_files=files)


def simulation_dir(project: Project) -> Path:
    """Where `activelearn simulate` leaves its CSVs for a project."""
    return project.workspace.data_dir / "simulations" / f"project-{project.id}"


def simulation_curve(
    project: Project, *, strategy: str = SIMULATION_STRATEGY
) -> tuple[pd.DataFrame | None, tuple[str, ...]]:
    """Mean and standard error over repeats, per n_labels, of one strategy in the project's
    simulation CSVs (strategy, repeat, round, n_labels, test_accuracy, test_nll, test_ece, ...).

    Unreadable files or files without those columns are skipped: a half-written CSV from a
    running simulation must not break the page.
    """
    folder = simulation_dir(project)
    if not folder.is_dir():
        return None, ()
    frames: list[pd.DataFrame] = []
    used: list[str] = []
    wanted = {"strategy", "n_labels", "test_accuracy", "test_nll", "test_ece"}
    for path in sorted(folder.glob("*.csv")):
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.ParserError) as error:
            log.warning("skipping simulation file %s: %s", path, error)
            continue
        if not wanted.issubset(frame.columns):
            continue
        frame = frame[frame["strategy"].astype(str) == strategy]
        if not frame.empty:
            frames.append(frame)
            used.append(path.name)
    if not frames:
        return None, tuple(used)
    data = pd.concat(frames, ignore_index=True)
    summary = simulation_summary(data)
    return summary, tuple(used)


def simulation_summary(data: pd.DataFrame) -> pd.DataFrame:
    """Per n_labels: mean and standard error (over repeats) of test accuracy, NLL and ECE."""
    out: dict[str, list[float]] = {"n_labels": [], "repeats": []}
    for metric in METRICS:
        out[metric] = []
        out[f"{metric}_se"] = []
    for n_labels, rows in data.groupby("n_labels", sort=True):
        out["n_labels"].append(float(n_labels))
        out["repeats"].append(float(len(rows)))
        for metric in METRICS:
            values = pd.to_numeric(rows[f"test_{metric}"], errors="coerce").dropna().to_numpy()
            out[metric].append(float(values.mean()) if values.size else math.nan)
            se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0
            out[f"{metric}_se"].append(se)
    return pd.DataFrame(out)


# ---------------------------------------------------------------- 2. training curves


def training_curves(project: Project, round_id: int) -> pd.DataFrame:
    """columns member, epoch, train_loss, val_loss of one round."""
    with read_session(project.engine) as session:
        check_round(session, project, round_id)
        rows = dash_queries.training_epochs(session, round_id)
    return pd.DataFrame(rows, columns=["member", "epoch", "train_loss", "val_loss"])
