"""Workspace and Project: the public API over the database, the import pipeline and the queue."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.orm import Session

from activelearn import paths
from activelearn.clock import utcnow
from activelearn.errors import (
    InvalidClasses,
    NoDatabase,
    ProjectExists,
    ProjectNotFound,
)
from activelearn.ingest.demo import DEMO_CLASSES
from activelearn.services import access, importing
from activelearn.services.project import Project
from activelearn.services.settings import ProjectSettings
from activelearn.services.validation import validate_annotator, validate_classes
from db import queries
from db.engine import default_url, make_engine, read_session, sqlite_path, with_write_retry
from db.migrate import upgrade

T = TypeVar("T")
DEMO_PROJECT = "demo"


def resolve_data_dir(url: str | None, data_dir: str | Path | None) -> Path:
    """The data folder of a database URL (see activelearn.paths.resolve_data_dir)."""
    return paths.resolve_data_dir(data_dir, db_file=sqlite_path(url) if url else None)


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


def _bound_user(user: str | None) -> str | None:
    if user is None or user == access.ANONYMOUS:
        return user
    return validate_annotator(user)


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
        try:
            project = self.project(name)
        except ProjectNotFound:
            try:
                # The demo ships a gold test split, so no audit share is needed for evaluation.
                project = self.create_project(
                    name, DEMO_CLASSES, settings={"audit_share": 0.0}, audited=False
                )
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
