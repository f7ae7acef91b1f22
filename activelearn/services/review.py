"""Sending a labeled sample back for review: its live labels are withdrawn (kept as history)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from activelearn.clock import utcnow
from activelearn.errors import UnknownTask
from activelearn.services import access
from activelearn.services.validation import validate_annotator
from db import dashboard as dash_queries
from db import queries
from db.engine import with_write_retry

if TYPE_CHECKING:
    from activelearn.services.workspace import Project

log = logging.getLogger(__name__)


def send_back_for_review(project: Project, sample_id: int, *, by: str) -> int:
    """Withdraw every live label of a sample (kept as superseded history) so that it returns to
    the labeling queue; an audit sample goes back to the pool. Returns the labels withdrawn.

    Leads only; the audit log records who sent it back.
    """
    name = validate_annotator(by)

    def work(session: Session) -> int:
        access.require_lead(session, project.workspace.user, "send labels back for review")
        sample = queries.get_sample(session, int(sample_id))
        if sample is None or sample.project_id != project.id:
            raise UnknownTask(f"no sample {sample_id} in project {project.name!r}")
        withdrawn = dash_queries.supersede_live_annotations(session, sample.id, utcnow())
        queries.refresh_sample_label(session, sample.id)
        access.audit(
            session,
            project.workspace.user,
            "send back for review",
            project=project,
            sample_id=sample.id,
            withdrawn=withdrawn,
            by=name,
        )
        return withdrawn

    withdrawn = with_write_retry(project.engine, work)
    log.info(
        "sample %s of project %r sent back for re-review by %s (%d labels withdrawn)",
        sample_id,
        project.name,
        name,
        withdrawn,
    )
    return withdrawn
