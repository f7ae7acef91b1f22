"""A project's counts at a glance: samples by split and state, labels since the served round."""

from __future__ import annotations

from sqlalchemy import Engine

from activelearn.types import ProjectStatus
from db import queries
from db.engine import read_session
from db.models import Round


def project_status(engine: Engine, project_id: int) -> ProjectStatus:
    with read_session(engine) as session:
        counts = queries.sample_counts(session, project_id)
        round_id = queries.latest_succeeded_round_id(session, project_id)
        watermark = 0
        if round_id is not None:
            round_row = session.get(Round, round_id)
            watermark = int((round_row.detail or {}).get("annotation_watermark", 0))
        since = queries.count_live_annotations(session, project_id, since_id=watermark)

    def total(split: str | None = None, status: str | None = None) -> int:
        return sum(
            n
            for (sp, st), n in counts.items()
            if (split is None or sp == split) and (status is None or st == status)
        )

    unlabeled = total("pool", "open")
    return ProjectStatus(
        n_samples=total(),
        n_pool=total("pool"),
        n_unlabeled=unlabeled,
        n_labeled=total("pool", "labeled"),
        n_eval=total("eval", "labeled"),
        n_test=total("test"),
        labels_since_round=since,
        current_round_id=round_id,
        pool_exhausted=total() > 0 and unlabeled == 0,
        n_rejected=total(status="rejected"),
    )
