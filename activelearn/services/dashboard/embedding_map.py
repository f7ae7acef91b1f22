"""Dashboard: the pool's embeddings on a 2-D map, and how good the representation is.

The map is the first two principal components of the served embeddings (a linear projection:
what is far apart on the map is far apart in the embedding, not the other way round). Quality
is the leave-one-out 1-nearest-neighbour accuracy of the labeled pool samples in the embedding:
how often a label agrees with the label of its closest labeled neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from activelearn.services.representation import current_embeddings
from db import dashboard as dash_queries
from db import queries
from db.engine import read_session

if TYPE_CHECKING:
    from activelearn.services.workspace import Project

MAP_POINTS = 4_000  # pool points drawn (seeded), enough to see every cluster
MAP_COLUMNS = ["sample_id", "x", "y", "label", "predicted", "mutual_information"]


@dataclass(frozen=True)
class EmbeddingMap:
    version: str
    points: pd.DataFrame  # MAP_COLUMNS; label/predicted None when unknown, MI NaN before a round
    n_pool: int  # pool samples embedded (the map draws at most MAP_POINTS of them)
    explained: tuple[float, float]  # share of the variance on each axis
    knn_accuracy: float | None  # leave-one-out 1-NN accuracy of the labeled pool samples
    n_labeled: int


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """(N, D) -> (N, 2) coordinates on the top two principal axes, and their variance shares."""
    centred = vectors - vectors.mean(0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    share = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:  # a 1-d embedding: the second axis is flat
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    padded = np.pad(share[:2], (0, max(0, 2 - len(share))))
    return coords, (float(padded[0]), float(padded[1]))


def knn_accuracy(vectors: np.ndarray, labels: list[str]) -> float | None:
    """Leave-one-out 1-NN accuracy (cosine) of labeled rows; None with fewer than 2 labels."""
    if len(labels) < 2:
        return None
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(1)
    truth = np.asarray(labels, dtype=object)
    return float((truth[nearest] == truth).mean())


def embedding_map(project: Project, round_id: int | None = None) -> EmbeddingMap | None:
    """The map of the served embeddings (None before the representation stage has run),
    coloured with the samples' labels and, with a round, its predictions and MI."""
    found = current_embeddings(project.engine, project.workspace.data_dir, project.id)
    if found is None:
        return None
    version, ids, vectors = found
    with read_session(project.engine) as session:
        row = queries.get_project_by_id(session, project.id)
        classes = list(row.classes) if row is not None else []
        pool = dict(dash_queries.pool_labels(session, project.id))
        scores = dash_queries.pool_score_columns(session, round_id) if round_id else []
    in_pool = np.array([int(i) in pool for i in ids])
    ids, vectors = ids[in_pool], vectors[in_pool]
    if len(ids) < 2:
        return None
    coords, explained = project_2d(vectors)
    labeled = [k for k, i in enumerate(ids) if pool[int(i)] is not None]
    quality = knn_accuracy(vectors[labeled], [pool[int(ids[k])] for k in labeled])
    drawn = np.arange(len(ids))
    if len(ids) > MAP_POINTS:
        drawn = np.sort(np.random.default_rng(0).choice(len(ids), MAP_POINTS, replace=False))
    by_id = {int(r[0]): r for r in scores}  # (id, MI, PE, EE, var, conf, predicted, ood)
    frame = pd.DataFrame(
        {
            "sample_id": ids[drawn].astype(np.int64),
            "x": coords[drawn, 0],
            "y": coords[drawn, 1],
            "label": [pool[int(i)] for i in ids[drawn]],
            "predicted": [
                classes[int(by_id[int(i)][6])] if int(i) in by_id else None for i in ids[drawn]
            ],
            "mutual_information": [
                float(by_id[int(i)][1]) if int(i) in by_id else np.nan for i in ids[drawn]
            ],
        },
        columns=MAP_COLUMNS,
    )
    return EmbeddingMap(
        version=version,
        points=frame,
        n_pool=len(ids),
        explained=explained,
        knn_accuracy=quality,
        n_labeled=len(labeled),
    )
