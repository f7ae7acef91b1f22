"""Opening a Workspace from many threads and processes at once never fails (issue 13).

Before: Alembic's migration context is process-global, so 3-5 of 8 threads opening one
Workspace failed with KeyError('script') or KeyError('config'), even on a current schema.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from activelearn import Workspace
from db.engine import make_engine
from db.migrate import current_revision, head_revision, upgrade
from tests.processes import REPO, child_env

THREADS = 8
PROCESSES = 4
ROUNDS = 2

# Each child opens the workspace from its own threads too, then proves it can write and read.
CHILD = """
import sys, threading
from activelearn import Workspace
url, data_dir, tag = sys.argv[1], sys.argv[2], sys.argv[3]
errors = []
barrier = threading.Barrier(4)
def open_one(index):
    try:
        barrier.wait()
        with Workspace(url, data_dir=data_dir) as ws:
            ws.projects()
    except BaseException as error:
        errors.append(repr(error))
threads = [threading.Thread(target=open_one, args=(i,)) for i in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("ERRORS", errors)
sys.exit(1 if errors else 0)
"""


def _open_concurrently(url: str, data_dir: Path) -> list[str]:
    """THREADS threads here and PROCESSES child processes (4 threads each) open the workspace
    at the same moment; returns every failure."""
    errors: list[str] = []
    barrier = threading.Barrier(THREADS)

    def open_one() -> None:
        try:
            barrier.wait()
            with Workspace(url, data_dir=data_dir) as ws:
                ws.projects()
        except BaseException as error:
            errors.append(repr(error))

    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(data_dir), str(index)],
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for index in range(PROCESSES)
    ]
    threads = [threading.Thread(target=open_one) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for child in children:
        output, _ = child.communicate(timeout=180)
        if child.returncode != 0:
            errors.append(output.decode(errors="replace")[-2000:])
    return errors


@pytest.mark.slow
def test_concurrent_open_of_a_fresh_database(db_url: str, tmp_path: Path) -> None:
    """The hardest case: nobody has migrated yet, so every opener races to upgrade."""
    errors = _open_concurrently(db_url, tmp_path / "data")
    assert errors == []
    engine = make_engine(db_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


@pytest.mark.slow
def test_concurrent_open_of_a_current_database(db_url: str, tmp_path: Path) -> None:
    with Workspace(db_url, data_dir=tmp_path / "data") as ws:
        ws.create_project("p", ["a", "b"])
    for _ in range(ROUNDS):
        assert _open_concurrently(db_url, tmp_path / "data") == []
    with Workspace(db_url, data_dir=tmp_path / "data") as ws:
        assert [project.name for project in ws.projects()] == ["p"]


def test_threads_upgrading_an_old_schema_at_once(db_url: str) -> None:
    """Threads that all find the schema old upgrade one after another: nobody fails."""
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    errors: list[str] = []
    barrier = threading.Barrier(THREADS)

    def run() -> None:
        try:
            barrier.wait()
            upgrade(engine)
        except BaseException as error:
            errors.append(repr(error))

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert current_revision(engine) == head_revision()
    engine.dispose()
