"""Automatic retraining: request a round every N new labels (project setting retrain_every)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from activelearn.services.workspace import Project
    from activelearn.types import RoundInfo

from activelearn.services import rounds

log = logging.getLogger("activelearn.triggers")


def after_label(project: Project) -> RoundInfo | None:
    """Called after every stored label; returns the round it queued, if it queued one.

    It runs on the labeling path, so it is one read transaction of indexed queries unless a
    round is due. It only queues (Project.submit returns the round): the app starts a
    background worker for it (ui.state.kick_worker); API users run `activelearn worker` or
    call rounds.ensure_worker. A failure here never fails the label, which is already committed.
    """
    try:
        return rounds.maybe_request_round(project)
    except Exception:
        log.exception("automatic round request failed for project %s", project.name)
        return None
