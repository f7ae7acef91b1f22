"""The cold start before the first model: TypiClust's picks over the pool's embeddings.

When a representation job succeeds, the pool's embeddings are clustered and the most typical
image of each least-labeled cluster is put first in the queue (samples.typical_rank), with the
sentence that says why. Before the first round the queue serves these picks, then the random
order; audit draws stay random. Hacohen et al. 2022 (TypiClust): on the demo, typicality from
zero labels reaches 90% test accuracy with about 30 labels where random order needs 40-60
(benchmarks/label_efficiency.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import Engine

from activelearn.core.typicality import SelectionContext, typiclust_select
from activelearn.services.representation import current_embeddings
from db import dashboard as dash_queries
from db import queries
from db import representations as rep_queries
from db.engine import read_session, with_write_retry

log = logging.getLogger("activelearn.worker")

PICKS_PER_CLASS = 10  # rounds take over long before these run out (auto: typicality inside)


def typical_picks(
    embeddings: np.ndarray, labeled: np.ndarray, *, count: int, n_classes: int, seed: int = 0
) -> list[tuple[int, str]]:
    """(N, D) pool embeddings, (N,) bool labeled -> [(pool position, why)] in serving order."""
    selection = typiclust_select(
        SelectionContext(
            embeddings=torch.as_tensor(embeddings, dtype=torch.float32),
            labeled=torch.as_tensor(labeled, dtype=torch.bool),
            count=count,
            n_classes=n_classes,
            seed=seed,
        )
    )
    return list(zip(selection.indices, selection.reasons, strict=True))


def store_typical_order(engine: Engine, data_dir: Path, project_id: int) -> int:
    """Write the project's cold-start picks from its served embeddings; returns how many."""
    found = current_embeddings(engine, data_dir, project_id)
    if found is None:
        return 0
    _, ids, vectors = found
    with read_session(engine) as session:
        project = queries.get_project_by_id(session, project_id)
        pool = dict(dash_queries.pool_labels(session, project_id))
    if project is None:
        return 0
    keep = np.array([int(i) in pool for i in ids], dtype=bool)
    pool_ids, pool_vectors = ids[keep], vectors[keep]
    labeled = np.array([pool[int(i)] is not None for i in pool_ids], dtype=bool)
    n_classes = len(project.classes)
    # TypiClust makes one cluster per pick: at most a fifth of the pool keeps clusters of about
    # five images or more (a cluster of one is no evidence of typicality).
    count = min(int((~labeled).sum()) // 5, PICKS_PER_CLASS * n_classes)
    if count == 0 or len(pool_ids) < 2:
        picks: list[tuple[int, str]] = []
    else:
        picks = [
            (int(pool_ids[position]), why)
            for position, why in typical_picks(
                pool_vectors, labeled, count=count, n_classes=n_classes
            )
        ]
    with_write_retry(engine, lambda s: rep_queries.set_typical_order(s, project_id, picks))
    log.info("project %s: %d typical cold-start picks stored", project_id, len(picks))
    return len(picks)
