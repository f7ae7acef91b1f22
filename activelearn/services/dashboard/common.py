"""Shared by the dashboard sections: section constants, the rounds overview, checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from activelearn.errors import UnknownTask
from db import dashboard as dash_queries
from db import queries
from db.engine import read_session

if TYPE_CHECKING:
    from activelearn.services.workspace import Project

from db.rounds import get_round

log = logging.getLogger(__name__)

HISTOGRAM_SCORES = ("mutual_information", "predictive_entropy", "variance")
HISTOGRAM_BINS = 40
CONFIDENCE_BINS = 100  # the threshold slider moves in steps of 0.01
SCATTER_POINTS = 4_000  # about this many uniformly sampled points, plus the top ones
SCATTER_TOP = 200
GALLERY_SIZE = 12
SIMULATION_STRATEGY = "random"
METRICS = ("accuracy", "nll", "ece")

# Suspected label errors: labels to which out-of-sample judges (K-fold heads that never trained
# on them) give less than half their probability (services.honesty).
LABEL_ISSUE_MIN_SCORE = 0.5


# ---------------------------------------------------------------- rounds


@dataclass(frozen=True)
class RoundRef:
    id: int
    n_labels: int


@dataclass(frozen=True)
class Overview:
    """The succeeded rounds, oldest first, and the two the pool charts compare."""

    rounds: tuple[RoundRef, ...]
    classes: tuple[str, ...]

    @property
    def latest(self) -> RoundRef | None:
        return self.rounds[-1] if self.rounds else None

    @property
    def previous(self) -> RoundRef | None:
        return self.rounds[-2] if len(self.rounds) >= 2 else None


def overview(project: Project) -> Overview:
    with read_session(project.engine) as session:
        rows = dash_queries.succeeded_rounds(session, project.id)
        project_row = queries.get_project_by_id(session, project.id)
        classes = tuple(project_row.classes) if project_row is not None else ()
    rounds = tuple(RoundRef(id=int(r[0]), n_labels=int(r[1] or 0)) for r in rows)
    return Overview(rounds=rounds, classes=classes)


def label_version(project: Project) -> tuple[int, int]:
    """Changes whenever a label is added or withdrawn: the cache key of label-dependent data."""
    with read_session(project.engine) as session:
        return dash_queries.label_version(session, project.id)


def check_round(session: Session, project: Project, round_id: int) -> None:
    row = get_round(session, round_id)
    if row is None or row.project_id != project.id:
        raise UnknownTask(f"no round {round_id} in project {project.name!r}")


@dataclass(frozen=True)
class StoppingThresholds:
    window: int = 4  # rounds the slope is fitted to
    keep_gain: float = 0.01  # accuracy per 100 labels at or above which labels clearly pay
    stop_gain: float = 0.002  # below this the curve counts as flat
    mutual_information: float = 0.1  # nats: a pool sample above this is still informative
    informative_share: float = 0.02  # at most this share of the pool informative to stop
    stability: float = 0.99  # at least this share of predictions unchanged to stop
