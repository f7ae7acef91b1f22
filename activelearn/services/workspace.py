"""Workspace and Project: the public API over the database, the import pipeline and the queue."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from activelearn import paths
from activelearn.clock import utcnow
from activelearn.errors import (
    InvalidClasses,
    NotAllowed,
    NothingToUndo,
    ProjectExists,
    ProjectNotFound,
    UnknownLabel,
    UnknownTask,
)
from activelearn.ingest.demo import DEMO_CLASSES
from activelearn.paths import project_cache_dir
from activelearn.score_fields import SCORE_FIELDS
from activelearn.services import importing, rounds, triggers
from activelearn.services.settings import ProjectSettings
from activelearn.services.validation import validate_annotator, validate_classes
from activelearn.types import ImportReport, LabelRecord, ProjectStatus, RoundInfo, Task
from db import queries
from db.engine import default_url, make_engine, read_session, sqlite_path, with_write_retry
from db.migrate import upgrade
from db.models import Round

DEMO_PROJECT = "demo"


def resolve_data_dir(url: str | None, data_dir: str | Path | None) -> Path:
    """The data folder of a database URL (see activelearn.paths.resolve_data_dir)."""
    return paths.resolve_data_dir(data_dir, db_file=sqlite_path(url) if url else None)


class Workspace:
    """A database (SQLite file by default, or any SQLAlchemy URL) and its data folder."""

    def __init__(
        self,
        url: str | None = None,
        *,
        data_dir: str | Path | None = None,
        migrate: bool = True,
    ) -> None:
        self.url = url or default_url(Path(data_dir) if data_dir is not None else None)
        self.data_dir = resolve_data_dir(self.url, data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = make_engine(self.url)
        if migrate:
            upgrade(self.engine)

    def create_project(
        self,
        name: str,
        classes: list[str],
        *,
        settings: dict[str, Any] | None = None,
    ) -> Project:
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise InvalidClasses("a project needs a name of 1 to 200 characters")
        class_list = validate_classes(list(classes))
        config = ProjectSettings.from_json(settings).validate()

        def work(session: Session) -> int:
            if queries.get_project(session, name) is not None:
                raise ProjectExists(f"a project named {name!r} already exists")
            project = queries.add_project(
                session, name=name, classes=class_list, settings=config.to_json(), now=utcnow()
            )
            return project.id

        try:
            project_id = with_write_retry(self.engine, work)
        except IntegrityError as error:
            raise ProjectExists(f"a project named {name!r} already exists") from error
        return Project(self, project_id, name)

    def project(self, name: str) -> Project:
        with read_session(self.engine) as session:
            row = queries.get_project(session, name)
            if row is None:
                known = ", ".join(p.name for p in queries.list_projects(session)) or "none yet"
                raise ProjectNotFound(f"no project named {name!r} (projects: {known})")
            return Project(self, row.id, row.name)

    def projects(self) -> list[Project]:
        with read_session(self.engine) as session:
            return [Project(self, row.id, row.name) for row in queries.list_projects(session)]

    def ensure_demo(self, name: str = DEMO_PROJECT) -> Project:
        """The built-in MNIST demo project, created and imported on first use."""
        try:
            project = self.project(name)
        except ProjectNotFound:
            try:
                # The demo ships a gold test split, so no audit share is needed for evaluation.
                project = self.create_project(name, DEMO_CLASSES, settings={"audit_share": 0.0})
            except ProjectExists:
                project = self.project(name)
        if project.status().n_samples == 0:
            importing.import_demo(project)
        return project

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


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
        def work(session: Session) -> ProjectSettings:
            new = ProjectSettings.from_json(self._row(session).settings).updated(**changes)
            queries.update_project(session, self.id, settings=new.to_json())
            return new

        return with_write_retry(self.engine, work)

    def add_classes(self, names: list[str]) -> list[str]:
        """Append classes (existing names are ignored); returns the full ordered list."""

        def work(session: Session) -> list[str]:
            current = list(self._row(session).classes)
            added = [name.strip() for name in names if name.strip() not in current]
            merged = validate_classes(current + list(dict.fromkeys(added)))
            queries.update_project(session, self.id, classes=merged)
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

    def _check_annotator(self, session: Session, annotator: str) -> str:
        name = validate_annotator(annotator)
        allowed = ProjectSettings.from_json(self._row(session).settings).allowed_annotators
        if allowed and name not in allowed:
            raise NotAllowed(f"{name!r} is not on the annotator list of project {self.name!r}")
        return name

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
                return self._task(session, held.task_id)
            settings = ProjectSettings.from_json(self._row(session).settings)
            round_id = queries.latest_succeeded_round_id(session, self.id)
            candidate, strategy = self._choose(session, settings, round_id, now)
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
            return self._task(session, task_id)

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
                candidate, strategy = self._choose(session, settings, round_id, now)
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
            return [self._task(session, task_id) for task_id in task_ids[:count]]

        for attempt in range(5):
            try:
                return with_write_retry(self.engine, work)
            except IntegrityError:
                # Another annotator's lease on the same sample won the race (PostgreSQL).
                if attempt == 4:
                    raise
        return []

    def _choose(
        self, session: Session, settings: ProjectSettings, round_id: int | None, now: datetime
    ) -> tuple[queries.Candidate | None, str]:
        if settings.audit_share > 0 and self._rng.random() < settings.audit_share:
            for skipped in (False, True):
                found = queries.find_random_candidate(session, self.id, now, skipped=skipped)
                if found is not None:
                    return found, "audit"
        if round_id is not None:
            for skipped in (False, True):
                found = queries.find_scored_candidate(
                    session, self.id, round_id, now, skipped=skipped
                )
                if found is not None:
                    return found, settings.strategy
            for skipped in (False, True):
                found = queries.find_random_candidate(
                    session, self.id, now, skipped=skipped, unscored_in_round=round_id
                )
                if found is not None:
                    return found, "unscored"
            return None, settings.strategy
        for skipped in (False, True):
            found = queries.find_random_candidate(session, self.id, now, skipped=skipped)
            if found is not None:
                return found, "cold_start"
        return None, "cold_start"

    def _task(self, session: Session, task_id: int) -> Task:
        entry = queries.get_task(session, task_id)
        if entry is None:
            raise UnknownTask(f"no task {task_id}")
        sample = queries.get_sample(session, entry.sample_id)
        assert sample is not None
        scores: dict[str, float] = {}
        mean_probs = member_predictions = None
        round_id = entry.round_id or queries.latest_succeeded_round_id(session, self.id)
        if round_id is not None:
            row = queries.score_row(session, round_id, sample.id)
            if row is not None:
                scores = {name: float(getattr(row, name)) for name in SCORE_FIELDS}
                scores["predicted_class"] = float(row.predicted_class)
                mean_probs = list(row.mean_probs) if row.mean_probs is not None else None
                member_predictions = (
                    list(row.member_predictions) if row.member_predictions is not None else None
                )
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
        )

    def task(self, task_id: int) -> Task:
        with read_session(self.engine) as session:
            entry = queries.get_task(session, task_id)
            if entry is None or entry.project_id != self.id:
                raise UnknownTask(f"no task {task_id} in project {self.name!r}")
            return self._task(session, task_id)

    def _check_label(self, session: Session, label: str) -> str:
        classes = list(self._row(session).classes)
        value = str(label).strip()
        if value not in classes:
            raise UnknownLabel(f"unknown label {value!r}; the classes are: {', '.join(classes)}")
        return value

    def _entry(self, session: Session, task_id: int) -> Any:
        entry = queries.get_task(session, int(task_id))
        if entry is None or entry.project_id != self.id:
            raise UnknownTask(f"no task {task_id} in project {self.name!r}")
        return entry

    def submit(self, task_id: int, label: str, annotator: str) -> RoundInfo | None:
        """Store a label for a served task. Submitting the same task twice stores one label;
        a different label for the same task replaces the first (history kept).

        Returns the round this label queued through the automatic trigger, if it queued one.
        """

        def work(session: Session) -> None:
            name = self._check_annotator(session, annotator)
            self._store_label(session, task_id, self._check_label(session, label), name)

        with_write_retry(self.engine, work)
        return self._after_label()

    def submit_page(
        self, labels: Mapping[int, str | None], annotator: str
    ) -> tuple[int, int, RoundInfo | None]:
        """A page of tasks at once (the grid): a label stores it, None gives the task back.

        One transaction: the whole page is stored, or nothing is (a bad label anywhere raises
        before anything is written). Returns (stored, released, round the labels queued).
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
                    entry = self._entry(session, task_id)
                    if entry.outcome is None:
                        queries.release_task(session, entry.id, outcome="released", now=now)
            stored = sum(value is not None for value in values.values())
            return stored, len(values) - stored

        stored, released = with_write_retry(self.engine, work)
        return stored, released, (self._after_label() if stored else None)

    def _store_label(self, session: Session, task_id: int, value: str, name: str) -> None:
        """One checked label for one served task, inside the caller's write transaction."""
        entry = self._entry(session, task_id)
        now = utcnow()
        existing = queries.annotation_for_task(session, entry.id)
        if existing is not None and not existing.superseded and existing.label == value:
            return
        if existing is not None and not existing.superseded:
            queries.supersede(session, existing.id, now)
        queries.add_annotation(
            session,
            project_id=self.id,
            sample_id=entry.sample_id,
            task_id=entry.id if existing is None else None,
            label=value,
            annotator=name,
            now=now,
        )
        queries.refresh_sample_label(session, entry.sample_id, make_eval=entry.strategy == "audit")
        queries.release_task(session, entry.id, outcome="labeled", now=now)

    def _after_label(self) -> RoundInfo | None:
        """Hook for automatic retraining (see activelearn.services.rounds)."""

        return triggers.after_label(self)

    def skip(self, task_id: int, annotator: str) -> None:
        """Give the task back; the sample goes behind the unskipped ones in the queue."""

        def work(session: Session) -> None:
            self._check_annotator(session, annotator)
            entry = self._entry(session, task_id)
            if entry.outcome is not None:
                return
            queries.add_skip(session, entry.sample_id)
            queries.release_task(session, entry.id, outcome="skipped", now=utcnow())

        with_write_retry(self.engine, work)

    def release(self, task_id: int, annotator: str) -> None:
        """Give a held task back without counting a skip (e.g. the annotator leaves)."""

        def work(session: Session) -> None:
            self._check_annotator(session, annotator)
            entry = self._entry(session, task_id)
            if entry.outcome is None:
                queries.release_task(session, entry.id, outcome="released", now=utcnow())

        with_write_retry(self.engine, work)

    def undo(self, annotator: str) -> Task:
        """Withdraw the annotator's last label (kept in history) and hold its sample for them."""

        def work(session: Session) -> Task:
            name = self._check_annotator(session, annotator)
            last = queries.last_live_annotation(session, self.id, name)
            if last is None:
                raise NothingToUndo(f"{name} has no label to undo in project {self.name!r}")
            now = utcnow()
            queries.supersede(session, last.id, now)
            queries.refresh_sample_label(session, last.sample_id)
            original = queries.get_task(session, last.task_id) if last.task_id else None
            strategy = original.strategy if original is not None else "undo"
            held = queries.current_lease(session, self.id, name, now)
            if held is not None:
                queries.release_task(session, held.task_id, outcome="released", now=now)
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
            return self._task(session, task_id)

        return with_write_retry(self.engine, work)

    def relabel(self, sample_id: int, label: str, annotator: str) -> None:
        """Change the annotator's label of a sample (the old one is kept as superseded)."""

        def work(session: Session) -> None:
            name = self._check_annotator(session, annotator)
            value = self._check_label(session, label)
            sample = queries.get_sample(session, int(sample_id))
            if sample is None or sample.project_id != self.id:
                raise UnknownTask(f"no sample {sample_id} in project {self.name!r}")
            now = utcnow()
            previous = queries.live_annotation_of(session, sample.id, name)
            if previous is not None and previous.label == value:
                return
            if previous is not None:
                queries.supersede(session, previous.id, now)
            queries.add_annotation(
                session,
                project_id=self.id,
                sample_id=sample.id,
                task_id=None,
                label=value,
                annotator=name,
                now=now,
            )
            queries.refresh_sample_label(session, sample.id)

        with_write_retry(self.engine, work)

    def recent_labels(self, annotator: str, *, limit: int = 10) -> list[LabelRecord]:
        name = validate_annotator(annotator)
        with read_session(self.engine) as session:
            rows = queries.recent_annotations(session, self.id, name, limit)
        return [LabelRecord(int(a), int(s), str(p), str(lbl), t) for a, s, p, lbl, t in rows]

    def labels(self) -> pd.DataFrame:
        """Current labels (undone ones excluded): sample_id, path, label, annotator, labeled_at."""
        with read_session(self.engine) as session:
            rows = queries.live_annotations(session, self.id)
        frame = pd.DataFrame(
            rows, columns=["sample_id", "path", "label", "annotator", "labeled_at", "split"]
        )
        return frame.astype({"sample_id": "int64"})

    def status(self) -> ProjectStatus:
        with read_session(self.engine) as session:
            counts = queries.sample_counts(session, self.id)
            round_id = queries.latest_succeeded_round_id(session, self.id)
            watermark = 0
            if round_id is not None:
                round_row = session.get(Round, round_id)
                watermark = int((round_row.detail or {}).get("annotation_watermark", 0))
            since = queries.count_live_annotations(session, self.id, since_id=watermark)

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
        )

    # ------------------------------------------------------------ rounds (services.rounds)

    def request_round(self, *, requested_by: str | None = None) -> RoundInfo:
        """Queue a retraining round; returns the queued or already running one."""

        return rounds.request_round(self, requested_by=requested_by)

    def cancel_round(self, round_id: int | None = None) -> RoundInfo | None:

        return rounds.cancel_round(self, round_id)

    def rounds(self) -> list[RoundInfo]:

        return rounds.list_rounds(self)

    def last_round(self) -> RoundInfo | None:
        """The newest round, whatever its status; None before the first."""

        return rounds.last_round(self)

    def active_round(self) -> RoundInfo | None:
        """The queued or running round, if any."""

        return rounds.active_round(self)
