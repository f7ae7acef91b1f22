"""Dashboard section 6: labels per class, annotator and hour, and agreement between annotators."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from db import dashboard as dash_queries
from db.engine import read_session

if TYPE_CHECKING:
    from activelearn.services.workspace import Project


# ---------------------------------------------------------------- 6. labels and people


@dataclass(frozen=True)
class LabelStats:
    per_class: pd.DataFrame  # label, split, count
    per_hour: pd.DataFrame  # hour, annotator, count
    annotators: tuple[str, ...]  # of the agreement matrix
    agreement: tuple[tuple[float | None, ...], ...]  # pairwise share of equal labels
    shared: tuple[tuple[int, ...], ...]  # pairwise count of samples both labeled
    n_multi: int  # samples with live labels from several annotators
    n_unanimous: int  # of which every annotator gave the same label


def label_stats(project: Project) -> LabelStats:
    with read_session(project.engine) as session:
        per_class = dash_queries.labels_per_class(session, project.id)
        per_hour = dash_queries.labels_per_hour(session, project.id)
        multi = dash_queries.multi_annotator_labels(session, project.id)
    annotators, agreement, shared, n_multi, n_unanimous = annotator_agreement(multi)
    return LabelStats(
        per_class=pd.DataFrame(per_class, columns=["label", "split", "count"]),
        per_hour=pd.DataFrame(per_hour, columns=["hour", "annotator", "count"]),
        annotators=annotators,
        agreement=agreement,
        shared=shared,
        n_multi=n_multi,
        n_unanimous=n_unanimous,
    )


def annotator_agreement(
    rows: list[tuple[int, str, str]],
) -> tuple[
    tuple[str, ...], tuple[tuple[float | None, ...], ...], tuple[tuple[int, ...], ...], int, int
]:
    """Pairwise percent agreement from (sample_id, annotator, label) rows.

    An annotator with two live labels on one sample counts with the newest (the last row).
    """
    by_sample: dict[int, dict[str, str]] = {}
    for sample_id, annotator, label in rows:
        by_sample.setdefault(sample_id, {})[annotator] = label
    by_sample = {s: labels for s, labels in by_sample.items() if len(labels) > 1}
    names = tuple(sorted({a for labels in by_sample.values() for a in labels}))
    index = {name: i for i, name in enumerate(names)}
    same = np.zeros((len(names), len(names)), dtype=np.int64)
    both = np.zeros((len(names), len(names)), dtype=np.int64)
    unanimous = 0
    for labels in by_sample.values():
        unanimous += len(set(labels.values())) == 1
        for a, b in itertools.combinations(sorted(labels), 2):
            i, j = index[a], index[b]
            both[i, j] += 1
            both[j, i] += 1
            if labels[a] == labels[b]:
                same[i, j] += 1
                same[j, i] += 1
    for i in range(len(names)):
        # The diagonal: an annotator agrees with themself on everything they shared with anyone.
        both[i, i] = int(both[i].sum())
        same[i, i] = both[i, i]
    agreement = tuple(
        tuple(float(same[i, j] / both[i, j]) if both[i, j] else None for j in range(len(names)))
        for i in range(len(names))
    )
    shared = tuple(tuple(int(v) for v in row) for row in both)
    return names, agreement, shared, len(by_sample), unanimous
