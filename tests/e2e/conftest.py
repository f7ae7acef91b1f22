"""A real `streamlit run app.py` over a temporary demo database, and a real Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from activelearn import Workspace
from tests.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGE,
    NEXT_IMAGE_JS,
    ROOT,
    sign_in,
    start_app,
)

ARTIFACTS = ROOT / "test-artifacts"


@dataclass(frozen=True)
class AppServer:
    url: str
    db_url: str
    data_dir: Path


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run "
            "the browser tests; .ci/run installs it"
        )
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing")
    return CHROMIUM


def _worker_pids(data_dir: Path) -> set[int]:
    """The background workers serving `data_dir`: its pid file, and on Linux every process
    whose command line names it (a worker still importing torch has no pid file yet)."""
    from activelearn.paths import PID_FILE

    pids = set()
    with suppress(OSError, ValueError):
        pids.add(int((data_dir / PID_FILE).read_text().strip()))
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with suppress(OSError):
            words = cmdline.read_bytes().split(b"\0")
            if b"activelearn.worker" in words and str(data_dir).encode() in words:
                pids.add(int(cmdline.parent.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with suppress(OSError):  # an exited worker nobody reaped yet is done all the same
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def stop_worker(data_dir: Path, *, timeout_s: float = 15.0) -> None:
    """Stop the background workers the app started for `data_dir` (they outlive the server)."""
    pids = _worker_pids(data_dir)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def serve_app(
    folder: Path, prepare: Callable[[Workspace], object], *, import_roots: Path | None = None
) -> Iterator[AppServer]:
    """`streamlit run app.py` on a free port of 127.0.0.1 over a fresh database in `folder`.

    `prepare` fills the database first (through the public API), so that start-up timeouts
    measure the app, not an import.
    """
    db_url = f"sqlite:///{folder / 'al.db'}"
    data_dir = folder / "data"
    with Workspace(db_url, data_dir=data_dir) as workspace:
        prepare(workspace)
    log = (folder / "streamlit.log").open("wb")
    try:
        process, url = start_app(db_url, data_dir, log=log, import_roots=import_roots)
    except BaseException:
        log.close()
        raise
    try:
        yield AppServer(url=url, db_url=db_url, data_dir=data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        stop_worker(data_dir)


def _demo_without_retraining(workspace: Workspace) -> None:
    # Automatic retraining is off so that no background round competes for the CPU.
    workspace.ensure_demo().update_settings(retrain_every=0)


@pytest.fixture(scope="module")
def app_server(
    chromium_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    """The app over a fresh database holding the demo project, automatic retraining off."""
    with serve_app(tmp_path_factory.mktemp("e2e"), _demo_without_retraining) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def open_label_page(browser: Any, url: str, annotator: str) -> Any:
    """A new browser context (its own session), signed in as `annotator`, a sample on screen."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    sign_in(page, annotator)
    return page


def press_and_wait(page: Any, key: str) -> str:
    """Press `key`; wait until the next image is shown and decoded; returns its src."""
    old = page.locator(IMAGE).get_attribute("src")
    page.keyboard.press(key)
    page.wait_for_function(NEXT_IMAGE_JS, arg=old, polling="raf")
    return str(page.locator(IMAGE).get_attribute("src"))


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
