"""Workspace and Project: the public API over the database, the import pipeline and the queue."""

from __future__ import annotations

import copy
import os
import random
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.orm import Session

from activelearn.errors import (
    InvalidAnnotator,
    InvalidClasses,
    NoDatabase,
    NotAllowed,
    NothingToRelabel,
    NothingToUndo,
    ProjectExists,
    ProjectNotFound,
    TaskNotCurrent,
    UnknownLabel,
    UnknownTask,
)
from activelearn.services import access, labeling
from activelearn.services.settings import ProjectSettings
from activelearn.types import ImportReport, LabelRecord, ProjectStatus, RoundInfo, Task
from db import queries
from db.engine import default_url, make_engine, read_session, sqlite_path, with_write_retry
from db.migrate import upgrade

T = TypeVar("T")
DEMO_PROJECT = "demo"
MAX_CLASS_NAME = 200
MAX_ANNOTATOR_NAME = 200
SCORE_FIELDS = (
    "mutual_information",
    "predictive_entropy",
    "expected_entropy",
    "variance",
    "margin",
    "confidence",
)


def utcnow() -> datetime:
    """Naive UTC: stored the same way on SQLite and PostgreSQL."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def project_cache_dir(data_dir: Path, project_id: int) -> Path:
    """Where a project's decoded tensors live (written by imports, read by rounds)."""
    return Path(data_dir) / "cache" / f"project-{project_id}"


def resolve_data_dir(url: str | None, data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    env_dir = os.environ.get("ACTIVELEARN_DATA_DIR")
    if env_dir:
        return Path(env_dir)
    db_file = sqlite_path(url) if url else None
    return db_file.parent if db_file is not None else Path("data")


def _shown(url: str) -> str:
    db_file = sqlite_path(url)
    if db_file is not None:
        return str(db_file.resolve())
    return make_url(url).render_as_string(hide_password=True)


def check_database_exists(url: str, *, given: bool = True) -> None:
    """Raise NoDatabase when `url` is a SQLite file that does not exist (opening it would
    create it); other databases are checked for tables once connected (has_schema). `given`:
    the URL was typed by someone (a relative path then gets a hint about the slashes)."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise NoDatabase(
            f"not a database URL: {url!r} (give one like sqlite:///path/to/activelearn.db)"
        ) from error
    db_file = sqlite_path(url) if parsed.get_backend_name() == "sqlite" else None
    if db_file is not None and not db_file.is_file():
        relative = given and not db_file.is_absolute()
        hint = " (a relative path: an absolute one has four slashes, sqlite:////...)"
        hint = hint if relative else ""
        raise NoDatabase(
            f"no database at {db_file.resolve()}{hint}: "
            "`activelearn demo` or `activelearn import` creates one"
        )


def has_schema(engine: Engine) -> bool:
    """Whether the database holds activelearn's tables (Alembic's version table)."""
    return "alembic_version" in inspect(engine).get_table_names()


def validate_classes(classes: list[str]) -> list[str]:
    cleaned = [str(name).strip() for name in classes]
    if len(cleaned) < 2:
        raise InvalidClasses("a project needs at least two classes")
    for name in cleaned:
        if not name:
            raise InvalidClasses("class names must not be empty")
        if len(name) > MAX_CLASS_NAME:
            raise InvalidClasses(
                f"class name too long (over {MAX_CLASS_NAME} characters): {name[:40]}…"
            )
    # Cat, cat and CAT are one class to a person: refuse them together, whatever the case.
    folded = [name.casefold() for name in cleaned]
    duplicates = sorted(
        {name for name, key in zip(cleaned, folded, strict=True) if folded.count(key) > 1}
    )
    if duplicates:
        raise InvalidClasses(
            f"duplicate class names: {', '.join(duplicates)} "
            "(upper and lower case count as the same)"
        )
    return cleaned


def validate_annotator(annotator: str) -> str:
    name = (annotator or "").strip()
    if not name:
        raise InvalidAnnotator("an annotator name is required")
    if len(name) > MAX_ANNOTATOR_NAME or re.search(r"[\x00-\x1f]", name):
        raise InvalidAnnotator("annotator names must be at most 200 printable characters")
    return name


def _bound_user(user: str | None) -> str | None:
    if user is None or user == access.ANONYMOUS:
        return user
    return validate_annotator(user)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


class Workspace:
    """A database (SQLite file by default, or any SQLAlchemy URL) and its data folder.

    `user`: who acts through this workspace (see activelearn.services.access): None is the
    local operator (the CLI, a script), who may do everything; the app binds the logged-in user.
    `import_roots`: when given, every folder and manifest imported (and each file a manifest
    names) must resolve inside one of these folders; None (the default) imports from anywhere.
    `create`: whether a database that does not exist yet is created. The default (None) creates
    one at a URL given here or in $ACTIVELEARN_DB_URL, but never the implicit
    ./data/activelearn.db: `Workspace()` in a folder without one raises NoDatabase instead of
    leaving a stray database behind (the app and `activelearn demo`/`import` pass create=True).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        user: str | None = None,
        data_dir: str | Path | None = None,
        migrate: bool = True,
        import_roots: list[str | Path] | None = None,
        create: bool | None = None,
    ) -> None:
        explicit = url or os.environ.get("ACTIVELEARN_DB_URL")
        self.url = url or default_url(Path(data_dir) if data_dir is not None else None)
        if create is None:
            create = bool(explicit)
        if not create:
            check_database_exists(self.url, given=bool(url))
        self.data_dir = resolve_data_dir(self.url, data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.user: str | None = _bound_user(user)
        self.import_roots: list[Path] | None = (
            None if import_roots is None else [Path(root) for root in import_roots]
        )
        self.engine: Engine = make_engine(self.url)
        if not create and not has_schema(self.engine):
            self.engine.dispose()
            raise NoDatabase(f"no activelearn database at {_shown(self.url)} (it has no tables)")
        if migrate:
            upgrade(self.engine)

    def as_user(self, user: str | None) -> Workspace:
        """The same database (one shared engine) acting as `user`: cheap, e.g. per request."""
        view = copy.copy(self)
        view.user = _bound_user(user)
        return view

    # ------------------------------------------------------------ people (services.access)

    def set_role(self, user: str, role: str) -> None:
        """Register `user` as 'lead' or 'annotator' (or change their role). The first lead ends
        open mode: from then on only registered people may act, each within their role."""
        access.set_role(self, user, role)

    def remove_user(self, user: str) -> bool:
        return access.remove_user(self, user)

    def roles(self) -> dict[str, str]:
        """{name: role} of every registered person."""
        return access.roles(self)

    def role(self, user: str | None = None) -> str | None:
        """The effective role of `user` (default: the bound user); 'lead' in open mode."""
        return access.role_of(self, self.user if user is None else user)

    def set_password(self, user: str, password: str) -> None:
        access.set_password(self, user, password)

    def audit_log(self) -> pd.DataFrame:
        """Lead actions, newest first: at, actor, action, project, detail (leads only)."""
        return access.audit_log(self)

    def create_project(
        self,
        name: str,
        classes: list[str],
        *,
        settings: dict[str, Any] | None = None,
        audited: bool = True,
    ) -> Project:
        """A new project (leads only once a lead exists). `audited=False` is for the built-in
        demo, which the app creates on an empty database whoever opens it first."""
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise InvalidClasses("a project needs a name of 1 to 200 characters")
        class_list = validate_classes(list(classes))
        config = ProjectSettings.from_json(settings).validate()

        def work(session: Session) -> int:
            if audited:
                access.require_lead(session, self.user, "create projects")
            if queries.get_project(session, name) is not None:
                raise ProjectExists(f"a project named {name!r} already exists")
            project = queries.add_project(
                session, name=name, classes=class_list, settings=config.to_json(), now=utcnow()
            )
            if audited:
                access.audit(
                    session,
                    self.user,
                    "create project",
                    project=(project.id, name),
                    classes=class_list,
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

    def only_project(self, name: str | None = None) -> Project:
        """The project called `name`; without a name, the only project (never a guess among
        several, and never a default name)."""
        if name:
            return self.project(name)
        projects = self.projects()
        if len(projects) == 1:
            return projects[0]
        if not projects:
            raise ProjectNotFound(
                "no projects yet: run `activelearn demo` or `activelearn import --project NAME`"
            )
        names = ", ".join(p.name for p in projects)
        raise ProjectNotFound(f"several projects ({names}): name one with --project")

    def remove_empty_project(self, name: str) -> bool:
        """Delete a project that holds no samples (a failed first import); True if deleted."""
        import shutil

        def work(session: Session) -> Project | None:
            row = queries.get_project(session, name)
            if row is None or queries.sample_counts(session, row.id):
                return None
            session.delete(row)
            return Project(self, row.id, row.name)

        removed = with_write_retry(self.engine, work)
        if removed is not None:
            shutil.rmtree(removed.cache_dir, ignore_errors=True)
        return removed is not None

    def projects(self) -> list[Project]:
        with read_session(self.engine) as session:
            return [Project(self, row.id, row.name) for row in queries.list_projects(session)]

    def ensure_demo(self, name: str = DEMO_PROJECT) -> Project:
        """The built-in MNIST demo project, created and imported on first use."""
        from activelearn.services.importing import import_demo

        try:
            project = self.project(name)
        except ProjectNotFound:
            from activelearn.ingest.demo import DEMO_CLASSES

            try:
                # The demo ships a gold test split, so no audit share is needed for evaluation.
                project = self.create_project(
                    name, DEMO_CLASSES, settings={"audit_share": 0.0}, audited=False
                )
            except ProjectExists:
                project = self.project(name)
        if project.status().n_samples == 0:
            import_demo(project)
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
            access.require_lead(session, self.workspace.user, "change settings")
            new = ProjectSettings.from_json(self._row(session).settings).updated(**changes)
            queries.update_project(session, self.id, settings=new.to_json())
            access.audit(
                session,
                self.workspace.user,
                "change settings",
                project=self,
                changes={key: _jsonable(value) for key, value in changes.items()},
            )
            return new

        return with_write_retry(self.engine, work)

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
        from activelearn.services.importing import import_source

        return import_source(self, path)

    def import_manifest(self, path: str | Path) -> ImportReport:
        """Import a CSV manifest with a path column and optional label and split columns."""
        from activelearn.services.importing import import_manifest

        return import_manifest(self, path)

    def import_zip(self, data: bytes | str | Path, *, name: str = "upload.zip") -> ImportReport:
        from activelearn.services.importing import import_zip

        return import_zip(self, data, name=name)

    # ------------------------------------------------------------ the queue

    def _check_annotator(self, session: Session, annotator: str, action: str = "label") -> str:
        name = validate_annotator(annotator)
        access.check_acts_as(session, self.workspace.user, name, action)
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
            # The ranking served is the round's: name its strategy, not today's setting.
            ranked_by = queries.round_strategy(session, round_id) or settings.strategy
            for skipped in (False, True):
                found = queries.find_scored_candidate(
                    session, self.id, round_id, now, skipped=skipped
                )
                if found is not None:
                    return found, ranked_by
            for skipped in (False, True):
                found = queries.find_random_candidate(
                    session, self.id, now, skipped=skipped, unscored_in_round=round_id
                )
                if found is not None:
                    return found, "unscored"
            return None, ranked_by
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
            original_name=sample.original_name,
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
            queries.refresh_sample_label(session, entry.sample_id)
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
        )
        queries.refresh_sample_label(session, entry.sample_id, make_eval=entry.strategy == "audit")
        queries.release_task(session, entry.id, outcome="labeled", now=now)

    def _after_label(self) -> RoundInfo | None:
        """Hook for automatic retraining (see activelearn.services.rounds)."""
        from activelearn.services import triggers

        return triggers.after_label(self)

    def _give_back(
        self, session: Session, task_id: int, name: str, *, outcome: str, now: datetime
    ) -> bool:
        """Close a held task (skipped or released); False when it was not open any more."""
        entry = self._entry(session, task_id)
        if entry.outcome is not None or queries.lease_of_task(session, entry.id) is None:
            return False  # answered, given back, or taken over: nothing is held any more
        labeling.check_task_is_theirs(
            session, entry=entry, annotator=name, user=self.workspace.user
        )
        queries.release_task(session, entry.id, outcome=outcome, now=now)
        return True

    def skip(self, task_id: int, annotator: str) -> None:
        """Give the task back; the sample goes behind the unskipped ones in the queue."""

        def work(session: Session) -> None:
            name = self._check_annotator(session, annotator)
            entry = self._entry(session, task_id)
            if self._give_back(session, task_id, name, outcome="skipped", now=utcnow()):
                queries.add_skip(session, entry.sample_id)

        with_write_retry(self.engine, work)

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
            queries.refresh_sample_label(session, last.sample_id)
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
            return self._task(session, task_id)

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
            queries.refresh_sample_label(session, sample.id)
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
        frame = pd.DataFrame(
            rows,
            columns=[
                "sample_id",
                "path",
                "label",
                "annotator",
                "labeled_at",
                "split",
                "original_name",
            ],
        )
        frame["original_name"] = frame["original_name"].fillna("").astype(str)
        return frame.astype({"sample_id": "int64"})

    def original_names(self, sample_ids: list[int]) -> dict[int, str]:
        """sample id -> the file's original name (path inside the imported folder or zip), for
        the samples that have one recorded."""
        with read_session(self.engine) as session:
            names = queries.original_names(session, [int(i) for i in sample_ids])
        return {sample_id: name for sample_id, name in names.items() if name}

    def status(self) -> ProjectStatus:
        with read_session(self.engine) as session:
            counts = queries.sample_counts(session, self.id)
            round_id = queries.latest_succeeded_round_id(session, self.id)
            watermark = 0
            if round_id is not None:
                from db.models import Round

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
        """Queue a retraining round; returns the queued or already running one (leads only)."""
        from activelearn.services import rounds

        with access.lead_action(
            self.workspace, "request round", "start rounds", project=self
        ) as log:
            info = rounds.request_round(self, requested_by=requested_by)
            log["round_id"] = info.id
        return info

    def cancel_round(self, round_id: int | None = None) -> RoundInfo | None:
        from activelearn.services import rounds

        with access.lead_action(
            self.workspace, "cancel round", "cancel rounds", project=self
        ) as log:
            info = rounds.cancel_round(self, round_id)
            log["round_id"] = None if info is None else info.id
        return info

    def rounds(self) -> list[RoundInfo]:
        from activelearn.services import rounds

        return rounds.list_rounds(self)

    def last_round(self) -> RoundInfo | None:
        """The newest round, whatever its status; None before the first."""
        from activelearn.services import rounds

        return rounds.last_round(self)

    def active_round(self) -> RoundInfo | None:
        """The queued or running round, if any."""
        from activelearn.services import rounds

        return rounds.active_round(self)
