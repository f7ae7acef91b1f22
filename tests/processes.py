"""Helpers for tests that run real worker processes against a test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from activelearn import Workspace
from db import rounds as round_queries
from db.engine import read_session
from db.models import Round

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def child_env() -> dict[str, str]:
    """The environment of a child Python process: this checkout importable, output unbuffered."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def start_worker(ws: Workspace, *options: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """`python -m activelearn.worker` on the workspace's database; output to `log` (appended)
    or to a pipe."""
    command = [sys.executable, "-m", "activelearn.worker", "--db", ws.url]
    command += ["--data-dir", str(ws.data_dir), *options]
    if log is None:
        return subprocess.Popen(
            command, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    with log.open("ab") as handle:
        return subprocess.Popen(
            command, cwd=REPO, env=child_env(), stdout=handle, stderr=subprocess.STDOUT
        )


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float = 60.0,
    every: float = 0.05,
    what: str = "a condition",
) -> T:
    """Poll until `predicate` returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def round_row(ws: Workspace, round_id: int) -> Round:
    with read_session(ws.engine) as session:
        row = round_queries.get_round(session, round_id)
        assert row is not None, f"round {round_id} does not exist"
        return row
