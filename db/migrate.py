"""Alembic migrations, applied at start-up so an older database keeps every label.

Start-up is safe under concurrency (a web server opening one Workspace per request, several
app processes starting at once): a database already at the newest revision is only read, never
handed to Alembic, and upgrades are serialised, within a process by a lock (Alembic's migration
context is process-global: two threads upgrading at once failed with KeyError('script') or
KeyError('config')) and across processes by a file lock plus BEGIN IMMEDIATE on SQLite and a
transaction-scoped advisory lock on PostgreSQL, re-checking the revision once the lock is held.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from db.engine import sqlite_path

try:
    import fcntl
except ImportError:  # Windows: BEGIN IMMEDIATE alone serialises SQLite upgrades
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key for schema upgrades: any constant shared by every activelearn process.
PG_MIGRATION_LOCK = 0x61_6C_6D_69  # "alm i"
_PROCESS_LOCK = threading.Lock()


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest). Idempotent, and safe to call from
    many threads and processes at once."""
    if revision == "head" and current_revision(engine) == head_revision():
        return  # the common start-up: one read, no Alembic, no lock
    with _PROCESS_LOCK, _sqlite_file_lock(engine), _locked_connection(engine) as connection:
        if revision == "head" and _revision_of(connection) == head_revision():
            return  # another process upgraded while this one waited for the lock
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def _locked_connection(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the database-wide upgrade lock until it ends."""
    if engine.dialect.name == "sqlite":
        # BEGIN IMMEDIATE (db.engine's write option): the write lock is taken before the revision
        # is read, so two processes never both decide to upgrade.
        with engine.execution_options(activelearn_write=True).begin() as connection:
            yield connection
        return
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            connection.execute(lock, {"key": PG_MIGRATION_LOCK})
        yield connection


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An OS file lock beside the SQLite file: waiting processes sleep instead of polling."""
    db_file = sqlite_path(str(engine.url)) if fcntl is not None else None
    if db_file is None:
        yield
        return
    fd = os.open(f"{db_file}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _revision_of(connection)


@lru_cache(maxsize=1)
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head
