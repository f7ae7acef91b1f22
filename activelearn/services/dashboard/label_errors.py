"""Dashboard section 7: suspected label errors, judged out of sample.

Each label of a round was judged by K-fold heads that never trained on it (services.honesty,
core.label_issues; cleanlab's self-confidence ranking): `label_issue` = 1 - the probability
those judges give the label. A model cannot judge labels it fit, so the round's own ensemble
is not asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from activelearn.services.dashboard.common import LABEL_ISSUE_MIN_SCORE, check_round
from db import dashboard as dash_queries
from db import queries
from db.engine import read_session
from db.models import Round

if TYPE_CHECKING:
    from activelearn.services.workspace import Project

LABEL_ISSUE_COLUMNS = ["sample_id", "label", "suggested_label", "score", "annotator"]


@dataclass(frozen=True)
class SuspectedLabelError:
    sample_id: int
    path: str
    label: str  # the sample's label now
    suggested: str  # the class the out-of-sample judges prefer
    score: float  # in [0, 1]: 1 - their probability of the label; higher = more likely wrong
    annotator: str | None  # who gave the live label

    @property
    def label_probability(self) -> float:
        return 1.0 - self.score


def _class_name(classes: tuple[str, ...] | list[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else f"class {index}"


def rank_label_issues(
    rows: list[tuple[Any, ...]], *, classes: tuple[str, ...] | list[str], min_score: float = 0.0
) -> list[SuspectedLabelError]:
    """Rows (sample_id, path, label, suggested_class, label_issue, annotator) -> the judged
    labels with score >= min_score, highest first (a label no longer a class is left out)."""
    found = []
    for sample_id, path, label, suggested, score, annotator in rows:
        if score is None or suggested is None or str(label) not in classes:
            continue
        if float(score) < min_score:
            continue
        found.append(
            SuspectedLabelError(
                sample_id=int(sample_id),
                path=str(path),
                label=str(label),
                suggested=_class_name(classes, int(suggested)),
                score=float(score),
                annotator=None if annotator is None else str(annotator),
            )
        )
    found.sort(key=lambda e: (-e.score, e.sample_id))
    return found


def _rows(project: Project, round_id: int) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    with read_session(project.engine) as session:
        check_round(session, project, round_id)
        row = queries.get_project_by_id(session, project.id)
        classes = tuple(row.classes) if row is not None else ()
        round_row = session.get(Round, round_id)
        detail = (round_row.detail or {}) if round_row is not None else {}
        watermark = detail.get("annotation_watermark")
        rows = dash_queries.judged_label_rows(
            session, round_id, watermark=None if watermark is None else int(watermark)
        )
        return classes, rows


def find_label_errors(
    project: Project, round_id: int, *, min_score: float = LABEL_ISSUE_MIN_SCORE
) -> list[SuspectedLabelError]:
    """The round's suspected label errors: judges that never saw the label give it less than
    1 - min_score (default: under half) and prefer another class; most suspicious first."""
    classes, rows = _rows(project, round_id)
    found = rank_label_issues(rows, classes=classes, min_score=min_score)
    return [e for e in found if e.suggested != e.label]


def label_issues(project: Project, round_id: int | None = None) -> pd.DataFrame:
    """Every judged label of the round (default: the latest succeeded one), highest score first:
    columns sample_id, label, suggested_label, score, annotator. Empty before a round."""
    if round_id is None:
        with read_session(project.engine) as session:
            round_id = queries.latest_succeeded_round_id(session, project.id)
    if round_id is None:
        return pd.DataFrame(columns=LABEL_ISSUE_COLUMNS)
    classes, rows = _rows(project, round_id)
    found = rank_label_issues(rows, classes=classes)
    return pd.DataFrame(
        [(e.sample_id, e.label, e.suggested, e.score, e.annotator) for e in found],
        columns=LABEL_ISSUE_COLUMNS,
    )
