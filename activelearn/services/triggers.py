"""Automatic retraining: request a round every N new labels (project setting retrain_every)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from activelearn.services.workspace import Project
    from activelearn.types import RoundInfo

AUTO_WORKER_ENV = "ACTIVELEARN_AUTO_WORKER"

log = logging.getLogger("activelearn.triggers")


def after_label(project: Project) -> RoundInfo | None:
    """Called after every stored label; returns the round it queued, if it queued one.

    It runs on the labeling path, so it is one read transaction of indexed queries unless a
    round is due. With ACTIVELEARN_AUTO_WORKER=1 (the app sets it) a queued round also makes
    sure a background worker is running; scripts and tests start workers themselves.
    A failure here never fails the label, which is already committed.
    """
    from activelearn.services import rounds

    try:
        queued = rounds.maybe_request_round(project)
        if queued is not None and os.environ.get(AUTO_WORKER_ENV) == "1":
            rounds.ensure_worker(project.workspace)
        return queued
    except Exception:
        log.exception("automatic round request failed for project %s", project.name)
        return None
