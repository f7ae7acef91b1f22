"""Which sample an annotator is served next, and a served task as the API returns it."""

from __future__ import annotations

import random
from datetime import datetime

from sqlalchemy.orm import Session

from activelearn.core.strategies import get_strategy
from activelearn.errors import UnknownTask
from activelearn.score_fields import SCORE_FIELDS
from activelearn.services.settings import ProjectSettings
from activelearn.types import Task
from db import queries

COLD_START_TYPICAL = "cold_start_typical"


def choose(
    session: Session,
    project_id: int,
    rng: random.Random,
    settings: ProjectSettings,
    round_id: int | None,
    now: datetime,
) -> tuple[queries.Candidate | None, str]:
    """The next sample to serve and the name of what chose it: an audit draw, the round's
    ranking (named by the round's strategy), an unscored sample, or the cold-start order."""
    if settings.audit_share > 0 and rng.random() < settings.audit_share:
        for skipped in (False, True):
            found = queries.find_random_candidate(session, project_id, now, skipped=skipped)
            if found is not None:
                return found, "audit"
    if round_id is not None:
        # The ranking served is the round's: name its strategy, not today's setting.
        ranked_by = queries.round_strategy(session, round_id) or settings.strategy
        for skipped in (False, True):
            found = queries.find_scored_candidate(
                session, project_id, round_id, now, skipped=skipped
            )
            if found is not None:
                return found, ranked_by
        for skipped in (False, True):
            found = queries.find_random_candidate(
                session, project_id, now, skipped=skipped, unscored_in_round=round_id
            )
            if found is not None:
                return found, "unscored"
        return None, ranked_by
    typical = _clusters_pool(settings.strategy)
    for skipped in (False, True):
        # Before the first round: with a strategy that clusters the embeddings (typiclust,
        # auto), TypiClust's picks once the representation stage has written them; then (and
        # for the other strategies, random included) the random order.
        found = (
            queries.find_random_candidate(session, project_id, now, skipped=skipped, typical=True)
            if typical
            else None
        )
        if found is not None:
            return found, COLD_START_TYPICAL
        found = queries.find_random_candidate(session, project_id, now, skipped=skipped)
        if found is not None:
            return found, "cold_start"
    return None, "cold_start"


def load_task(session: Session, project_id: int, task_id: int) -> Task:
    """A task with the scores of the round it came from (else the latest round's)."""
    entry = queries.get_task(session, task_id)
    if entry is None:
        raise UnknownTask(f"no task {task_id}")
    sample = queries.get_sample(session, entry.sample_id)
    assert sample is not None
    scores: dict[str, float] = {}
    mean_probs = member_predictions = None
    # Why it was chosen: the TypiClust cold start's sentence, or the serving round's.
    reason = sample.typical_reason if entry.strategy == COLD_START_TYPICAL else None
    round_id = entry.round_id or queries.latest_succeeded_round_id(session, project_id)
    if round_id is not None:
        row = queries.score_row(session, round_id, sample.id)
        if row is not None:
            scores = {name: float(getattr(row, name)) for name in SCORE_FIELDS}
            scores["predicted_class"] = float(row.predicted_class)
            mean_probs = list(row.mean_probs) if row.mean_probs is not None else None
            member_predictions = (
                list(row.member_predictions) if row.member_predictions is not None else None
            )
            if entry.round_id == round_id and row.reason:
                reason = row.reason
    return Task(
        id=entry.id,
        sample_id=sample.id,
        image=sample.path,
        rank=entry.rank,
        strategy=entry.strategy,
        round_id=entry.round_id,
        expires_at=entry.expires_at,
        scores=scores,
        mean_probs=mean_probs,
        member_predictions=member_predictions,
        original_name=sample.original_name,
        reason=reason,
    )


def _clusters_pool(strategy: str) -> bool:
    try:
        return get_strategy(strategy).needs_features
    except ValueError:
        return False
