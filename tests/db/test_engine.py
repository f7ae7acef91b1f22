"""The engine factory: SQLite pragmas and write transactions, backups, integrity."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from db.engine import (
    make_engine,
    read_session,
    sqlite_backup,
    sqlite_integrity_check,
    with_write_retry,
    write_session,
)


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_concurrent_read_then_write_transactions_do_not_fail(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE counter (n INTEGER)"))
        connection.execute(text("INSERT INTO counter VALUES (0)"))
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(50):
                with write_session(engine) as session:
                    n = session.execute(text("SELECT n FROM counter")).scalar_one()
                    session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with read_session(engine) as session:
        assert session.execute(text("SELECT n FROM counter")).scalar_one() == 400


def test_backup_is_consistent_copy(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")

    def fill(session) -> None:  # type: ignore[no-untyped-def]
        session.execute(text("CREATE TABLE t (n INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1), (2), (3)"))

    with_write_retry(engine, fill)
    sqlite_backup(engine, tmp_path / "backup.db")
    copy = make_engine(f"sqlite:///{tmp_path / 'backup.db'}")
    assert sqlite_integrity_check(copy) == "ok"
    with copy.connect() as connection:
        assert connection.execute(text("SELECT sum(n) FROM t")).scalar() == 6
