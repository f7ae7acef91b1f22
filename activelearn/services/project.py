"""Project: the public API of one project (labels, tasks, imports, rounds, status)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from activelearn.clock import utcnow
from activelearn.errors import (
    NothingToRelabel,
    NothingToUndo,
    ProjectNotFound,
    TaskNotCurrent,
    UnknownLabel,
    UnknownTask,
)
from activelearn.paths import project_cache_dir
from activelearn.services import (
    access,
    importing,
    labeling,
    rejection,
    rounds,
    task_queue,
    triggers,
)
from activelearn.services import representation as ssl
from activelearn.services.dashboard import label_errors
from activelearn.services.settings import ProjectSettings
from activelearn.services.status import project_status
from activelearn.services.validation import validate_annotator, validate_classes
from activelearn.types import ImportReport, LabelRecord, ProjectStatus, RoundInfo, Task
from db import queries
from db.engine import read_session, with_write_retry

T = TypeVar("T")


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


if TYPE_CHECKING:
    from activelearn.services.workspace import Workspace
    from activelearn.types import RepresentationInfo, RepresentationStatus


class Project:
    """One labeling project. Cheap to construct: it holds ids, never ORM rows."""

    def __init__(self, workspace: Workspace, project_id: int, name: str) -> None:
        self.workspace = workspace
        self.id = project_id
        self.name = name
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"Project(id={self.id}, name={self.name!r})"

    @property
    def engine(self) -> Engine:
        return self.workspace.engine

    # ------------------------------------------------------------ settings and classes

    def _row(self, session: Session) -> Any:
        row = queries.get_project_by_id(session, self.id)
        if row is None:
            raise ProjectNotFound(f"project {self.name!r} no longer exists")
        return row

    @property
    def classes(self) -> list[str]:
        with read_session(self.engine) as session:
            return list(self._row(session).classes)

    @property
    def settings(self) -> ProjectSettings:
        with read_session(self.engine) as session:
            return ProjectSettings.from_json(self._row(session).settings)

    def update_settings(self, **changes: Any) -> ProjectSettings:
        """Change settings (leads only); new features (backbone, weights, SSL epochs) queue a
        representation job, and rounds keep the current embeddings until it completes."""

        def work(session: Session) -> tuple[ProjectSettings, ProjectSettings]:
            access.require_lead(session, self.workspace.user, "change settings")
            old = ProjectSettings.from_json(self._row(session).settings)
            new = old.updated(**changes)
            queries.update_project(session, self.id, settings=new.to_json())
            access.audit(
                session,
                self.workspace.user,
                "change settings",
                project=self,
                changes={key: _jsonable(value) for key, value in changes.items()},
            )
            return old, new

        old, new = with_write_retry(self.engine, work)
        if ssl.features_changed(old, new) and self.status().n_pool > 1:
            ssl.request_representation(self, requested_by="settings")
        return new

    def add_classes(self, names: list[str]) -> list[str]:
        """Append classes (existing names are ignored); returns the full ordered list."""

        def work(session: Session) -> list[str]:
            access.require_lead(session, self.workspace.user, "add classes")
            current = list(self._row(session).classes)
            added = [name.strip() for name in names if name.strip() not in current]
            merged = validate_classes(current + list(dict.fromkeys(added)))
            queries.update_project(session, self.id, classes=merged)
            access.audit(session, self.workspace.user, "add classes", project=self, added=added)
            return merged

        return with_write_retry(self.engine, work)

    @property
    def cache_dir(self) -> Path:
        return project_cache_dir(self.workspace.data_dir, self.id)

    @property
    def files_dir(self) -> Path:
        return self.workspace.data_dir / "files" / f"project-{self.id}"

    # ------------------------------------------------------------ import

    def import_images(self, path: str | Path) -> ImportReport:
        """Import an image folder (flat: pool; class sub-folders: labeled) or a zip of one."""

        return importing.import_source(self, path)

    def import_manifest(self, path: str | Path) -> ImportReport:
        """Import a CSV manifest with a path column and optional label and split columns."""

        return importing.import_manifest(self, path)

    def import_zip(self, data: bytes | str | Path, *, name: str = "upload.zip") -> ImportReport:

        return importing.import_zip(self, data, name=name)

    # ------------------------------------------------------------ the queue

    def _check_annotator(self, session: Session, annotator: str, action: str = "label") -> str:
        return labeling.check_annotator(
            session,
            project_id=self.id,
            user=self.workspace.user,
            annotator=annotator,
            action=action,
        )

    def next_task(self, annotator: str) -> Task | None:
        """Lease the most informative open sample to `annotator`; None when nothing is left.

        An annotator who already holds a live lease gets that task again, so a page reload never
        strands a sample.
        """

        def work(session: Session) -> Task | None:
            name = self._check_annotator(session, annotator)
            now = utcnow()
            held = queries.current_lease(session, self.id, name, now)
            if held is not None:
                return task_queue.load_task(session, self.id, held.task_id)
            settings = ProjectSettings.from_json(self._row(session).settings)
            round_id = queries.latest_succeeded_round_id(session, self.id)
            candidate, strategy = task_queue.choose(
                session, self.id, self._rng, settings, round_id, now
            )
            if candidate is None:
                return None
            task_id = queries.lease_sample(
                session,
                project_id=self.id,
                sample_id=candidate.sample_id,
                annotator=name,
                round_id=round_id,
                strategy=strategy,
                score=candidate.score,
                rank=candidate.rank,
                now=now,
                expires_at=now + timedelta(seconds=settings.lease_seconds),
            )
            return task_queue.load_task(session, self.id, task_id)

        for attempt in range(5):
            try:
                return with_write_retry(self.engine, work)
            except IntegrityError:
                # Another annotator's lease on the same sample won the race (PostgreSQL).
                if attempt == 4:
                    raise
        return None

    def next_tasks(self, annotator: str, *, count: int) -> list[Task]:
        """Lease up to `count` samples at once (grid mode), the most informative first.

        Tasks the annotator already holds come first, so a reload shows the same page.
        """
        count = max(0, int(count))

        def work(session: Session) -> list[Task]:
            name = self._check_annotator(session, annotator)
            now = utcnow()
            task_ids = [lease.task_id for lease in queries.live_leases(session, self.id, name, now)]
            settings = ProjectSettings.from_json(self._row(session).settings)
            round_id = queries.latest_succeeded_round_id(session, self.id)
            while len(task_ids) < count:
                candidate, strategy = task_queue.choose(
                    session, self.id, self._rng, settings, round_id, now
                )
                if candidate is None:
                    break
                task_ids.append(
                    queries.lease_sample(
                        session,
                        project_id=self.id,
                        sample_id=candidate.sample_id,
                        annotator=name,
                        round_id=round_id,
                        strategy=strategy,
                        score=candidate.score,
                        rank=candidate.rank,
                        now=now,
                        expires_at=now + timedelta(seconds=settings.lease_seconds),
                    )
                )
            return [task_queue.load_task(session, self.id, task_id) for task_id in task_ids[:count]]

        for attempt in range(5):
            try:
                return with_write_retry(self.engine, work)
            except IntegrityError:
                # Another annotator's lease on the same sample won the race (PostgreSQL).
                if attempt == 4:
                    raise
        return []

    def task(self, task_id: int) -> Task:
        with read_session(self.engine) as session:
            entry = queries.get_task(session, task_id)
            if entry is None or entry.project_id != self.id:
                raise UnknownTask(f"no task {task_id} in project {self.name!r}")
            return task_queue.load_task(session, self.id, task_id)

    def _check_label(self, session: Session, label: str) -> str:
        classes = list(self._row(session).classes)
        value = str(label).strip()
        if value not in classes:
            raise UnknownLabel(f"unknown label {value!r}; the classes are: {', '.join(classes)}")
        return value

    def _entry(self, session: Session, task_id: int) -> Any:
        return labeling.task_entry(session, self.id, task_id, project_name=self.name)

    def submit(self, task_id: int, label: str, annotator: str) -> RoundInfo | None:
        """Store a label for a task the annotator holds. Submitting the same task twice stores
        one label; a different label for a task already answered replaces the first (history
        kept) as long as that answer is still the sample's live label.

        Raises TaskNotCurrent for a task held by someone else, given back, skipped, taken over
        after its hold expired, or whose label was undone or corrected since.
        Returns the round this label queued through the automatic trigger, if it queued one.
        """

        def work(session: Session) -> None:
            name = self._check_annotator(session, annotator)
            self._store_label(session, task_id, self._check_label(session, label), name)

        self._write_label(work)
        return self._after_label()

    def submit_page(
        self, labels: Mapping[int, str | None], annotator: str
    ) -> tuple[int, int, RoundInfo | None]:
        """A page of tasks at once (the grid): a label stores it, None gives the task back.

        One transaction: the whole page is stored, or nothing is (a bad label or a task that is
        no longer the annotator's anywhere raises before anything is kept). Returns (stored,
        released, round the labels queued).
        """

        def work(session: Session) -> tuple[int, int]:
            name = self._check_annotator(session, annotator)
            values = {
                task_id: None if label is None else self._check_label(session, label)
                for task_id, label in labels.items()
            }
            now = utcnow()
            for task_id, value in values.items():
                if value is not None:
                    self._store_label(session, task_id, value, name)
                else:
                    self._give_back(session, task_id, name, outcome="released", now=now)
            stored = sum(value is not None for value in values.values())
            return stored, len(values) - stored

        stored, released = self._write_label(work)
        return stored, released, (self._after_label() if stored else None)

    def _write_label(self, work: Callable[[Session], T]) -> T:
        """A labeling write; a concurrent change to the same sample's label is retried once,
        then reported plainly (the one-live-label index refused the second writer)."""
        for attempt in range(2):
            try:
                return with_write_retry(self.engine, work)
            except IntegrityError as error:
                if attempt == 1:
                    raise TaskNotCurrent(
                        "the sample's label was changed by someone else meanwhile: "
                        "reload and try again"
                    ) from error
        raise AssertionError("unreachable")

    def _store_label(self, session: Session, task_id: int, value: str, name: str) -> None:
        """One checked label for one task, inside the caller's write transaction."""
        entry = self._entry(session, task_id)
        now = utcnow()
        if entry.outcome == "labeled":
            live = labeling.answered_label_still_current(session, entry, name)
            if live is None:
                raise labeling.stale_task(entry, annotator=name)
            if live.label == value:
                return  # a double submit stores one label
            labeling.replace_live_label(
                session,
                project_id=self.id,
                sample_id=entry.sample_id,
                label=value,
                annotator=name,
                task_id=None,  # the task's first answer keeps its task id
                now=now,
            )
            return
        labeling.check_task_is_theirs(
            session, entry=entry, annotator=name, user=self.workspace.user
        )
        labeling.replace_live_label(
            session,
            project_id=self.id,
            sample_id=entry.sample_id,
            label=value,
            annotator=name,
            task_id=entry.id,
            now=now,
            make_eval=entry.strategy == "audit",
        )
        queries.release_task(session, entry.id, outcome="labeled", now=now)

    def _after_label(self) -> RoundInfo | None:
        """Hook for automatic retraining (see activelearn.services.rounds)."""

        return triggers.after_label(self)

    def _give_back(
        self, session: Session, task_id: int, name: str, *, outcome: str, now: datetime
    ) -> bool:
        """Close a held task (skipped or released); False when it was not open any more."""
        return labeling.give_back(
            session,
            self._entry(session, task_id),
            annotator=name,
            user=self.workspace.user,
            outcome=outcome,
            now=now,
        )

    def skip(self, task_id: int, annotator: str) -> None:
        """Give the task back; the sample goes behind the unskipped ones in the queue."""

        def work(session: Session) -> None:
            name = self._check_annotator(session, annotator)
            entry = self._entry(session, task_id)
            if self._give_back(session, task_id, name, outcome="skipped", now=utcnow()):
                queries.add_skip(session, entry.sample_id)

        with_write_retry(self.engine, work)

    def reject(self, task_id: int, *, annotator: str, reason: str | None = None) -> None:
        """Mark the sample of a held task as not a valid sample (key x on the label page): it
        leaves the pool, training, evaluation and scores until a lead restores it."""
        rejection.reject(self, task_id, annotator=annotator, reason=reason)

    def restore_rejected(self, sample_id: int) -> None:
        """Leads: put a rejected sample back into the queue (or back to its label)."""
        rejection.restore(self, sample_id)

    def label_issues(self, round_id: int | None = None) -> pd.DataFrame:
        """Labels judged by models that never trained on them (latest round by default):
        sample_id, label, suggested_label, score (higher = more likely wrong), annotator."""
        return label_errors.label_issues(self, round_id)

    def rejected(self) -> pd.DataFrame:
        """Rejected samples: sample_id, path, split, annotator, reason, rejected_at."""
        return rejection.rejected(self)

    def release(self, task_id: int, annotator: str) -> None:
        """Give a held task back without counting a skip (e.g. the annotator leaves)."""

        def work(session: Session) -> None:
            name = self._check_annotator(session, annotator)
            self._give_back(session, task_id, name, outcome="released", now=utcnow())

        with_write_retry(self.engine, work)

    def undo(self, annotator: str) -> Task:
        """Withdraw the annotator's last live label and hold its sample for them.

        The withdrawn label is kept in history, and the label it had replaced (a correction's
        previous label) is the sample's label again.
        """

        def work(session: Session) -> Task:
            name = self._check_annotator(session, annotator)
            last = queries.last_live_annotation(session, self.id, name)
            if last is None:
                raise NothingToUndo(f"{name} has no label to undo in project {self.name!r}")
            now = utcnow()
            labeling.withdraw_label(session, last, now)
            original = queries.get_task(session, last.task_id) if last.task_id else None
            strategy = original.strategy if original is not None else "undo"
            held = queries.current_lease(session, self.id, name, now)
            if held is not None:
                queries.release_task(session, held.task_id, outcome="released", now=now)
            other = queries.lease_of_sample(session, last.sample_id)
            if other is not None:
                # Whoever held the sample loses it to the undo: their task is no longer current.
                queries.release_task(session, other.task_id, outcome="released", now=now)
            settings = ProjectSettings.from_json(self._row(session).settings)
            task_id = queries.lease_sample(
                session,
                project_id=self.id,
                sample_id=last.sample_id,
                annotator=name,
                round_id=original.round_id if original is not None else None,
                strategy=strategy,
                score=original.score if original is not None else None,
                rank=original.rank if original is not None else None,
                now=now,
                expires_at=now + timedelta(seconds=settings.lease_seconds),
            )
            return task_queue.load_task(session, self.id, task_id)

        return self._write_label(work)

    def relabel(self, sample_id: int, label: str, annotator: str) -> None:
        """Correct a sample's current label, whoever gave it (the old one is kept as history;
        an undo brings it back). A sample without a label is labeled through the queue."""

        def work(session: Session) -> None:
            name = self._check_annotator(session, annotator, "correct")
            value = self._check_label(session, label)
            sample = queries.get_sample(session, int(sample_id))
            if sample is None or sample.project_id != self.id:
                raise UnknownTask(f"no sample {sample_id} in project {self.name!r}")
            live = queries.live_annotation(session, sample.id)
            if live is None:
                if sample.status == "labeled":
                    raise NothingToRelabel(
                        f"sample {sample.id} is a labeled {sample.split} sample from an import: "
                        "its label is corrected by importing it again"
                    )
                raise NothingToRelabel(
                    f"sample {sample.id} has no label to correct: label it from the queue"
                )
            if live.label == value and live.annotator == name:
                return  # another annotator's agreeing correction is kept: it is their answer
            labeling.check_may_replace(session, user=self.workspace.user, live=live, annotator=name)
            now = utcnow()
            lease = queries.lease_of_sample(session, sample.id)
            if lease is not None and lease.expires_at > now and lease.annotator != name:
                raise TaskNotCurrent(
                    f"{lease.annotator} holds sample {sample.id} right now: try again later"
                )
            labeling.replace_live_label(
                session,
                project_id=self.id,
                sample_id=sample.id,
                label=value,
                annotator=name,
                task_id=None,
                now=now,
            )
            if name != self.workspace.user and self.workspace.user is not None:
                access.audit(
                    session,
                    self.workspace.user,
                    "correct label",
                    project=self,
                    sample_id=sample.id,
                    annotator=name,
                    label=value,
                    previous=live.label,
                )

        self._write_label(work)

    def recent_labels(self, annotator: str, *, limit: int = 10) -> list[LabelRecord]:
        name = validate_annotator(annotator)
        with read_session(self.engine) as session:
            rows = queries.recent_annotations(session, self.id, name, limit)
        return [
            LabelRecord(int(a), int(s), str(p), str(lbl), t, original_name=original)
            for a, s, p, lbl, t, original in rows
        ]

    def labels(self) -> pd.DataFrame:
        """Current labels, one row per labeled sample (undone and corrected ones excluded):
        sample_id, path, label, annotator, labeled_at, split (pool for training labels, eval
        for audit labels held out for evaluation), original_name (the file's path inside the
        imported folder or zip; empty when it was not recorded)."""
        with read_session(self.engine) as session:
            rows = queries.live_annotations(session, self.id)
        columns = ["sample_id", "path", "label", "annotator", "labeled_at", "split"]
        frame = pd.DataFrame(rows, columns=[*columns, "original_name"])
        frame["original_name"] = frame["original_name"].fillna("").astype(str)
        return frame.astype({"sample_id": "int64"})

    def original_names(self, sample_ids: list[int]) -> dict[int, str]:
        """sample id -> the file's original name (path inside the imported folder or zip), for
        the samples that have one recorded."""
        with read_session(self.engine) as session:
            names = queries.original_names(session, [int(i) for i in sample_ids])
        return {sample_id: name for sample_id, name in names.items() if name}

    def status(self) -> ProjectStatus:
        """Sample counts by state, and how far the served ranking lags the labels."""
        return project_status(self.engine, self.id)

    # ------------------------------------------------------------ rounds (services.rounds)

    def request_round(self, *, requested_by: str | None = None) -> RoundInfo:
        """Queue a retraining round; returns the queued or already running one (leads only)."""

        with access.lead_action(
            self.workspace, "request round", "start rounds", project=self
        ) as log:
            info = rounds.request_round(self, requested_by=requested_by)
            log["round_id"] = info.id
        return info

    def cancel_round(self, round_id: int | None = None) -> RoundInfo | None:

        with access.lead_action(
            self.workspace, "cancel round", "cancel rounds", project=self
        ) as log:
            info = rounds.cancel_round(self, round_id)
            log["round_id"] = None if info is None else info.id
        return info

    def rounds(self) -> list[RoundInfo]:
        return rounds.list_rounds(self)

    def last_round(self) -> RoundInfo | None:
        """The newest round, whatever its status; None before the first."""
        return rounds.last_round(self)

    def active_round(self) -> RoundInfo | None:
        """The queued or running round, if any."""
        return rounds.active_round(self)

    # ------------------------------------------------------------ representation (ssl)

    def representation_status(self) -> RepresentationStatus:
        """The embeddings served (newest succeeded job) and the newest job of any status."""
        return ssl.representation_status(self)

    def request_representation(self, *, requested_by: str | None = None) -> RepresentationInfo:
        """Queue a representation job (leads only); returns the active one if there is one."""
        with access.lead_action(
            self.workspace, "request representation", "start representations", project=self
        ) as log:
            info = ssl.request_representation(self, requested_by=requested_by)
            log["representation_id"] = info.id
        return info

    def cancel_representation(self, job_id: int | None = None) -> RepresentationInfo | None:
        with access.lead_action(
            self.workspace, "cancel representation", "cancel representations", project=self
        ) as log:
            info = ssl.cancel_representation(self, job_id)
            log["representation_id"] = None if info is None else info.id
        return info

    def embeddings(self) -> tuple[np.ndarray, np.ndarray] | None:
        """((N,) sample ids, (N, D) float32) of the current encoder version, every split; None
        before the first representation job succeeded."""
        return ssl.embeddings(self)
