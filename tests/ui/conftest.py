"""AppTest fixtures: the app over a small real project in a temporary SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from activelearn import Project, Workspace
from activelearn.services import rounds
from tests.conftest import write_images

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
PAGES = "activelearn/ui/app_pages"
CLASSES = ["cat", "dog", "bird"]
TIMEOUT_S = 60


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A workspace the app will open (through the environment), with one small project."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    data_dir = tmp_path / "data"
    monkeypatch.setenv("ACTIVELEARN_DB_URL", url)
    monkeypatch.setenv("ACTIVELEARN_DATA_DIR", str(data_dir))
    # The setup page's server paths must lie under the import roots: the tests' temporary folder.
    monkeypatch.setenv("ACTIVELEARN_IMPORT_ROOTS", str(tmp_path))
    st.cache_resource.clear()
    # No background worker from AppTest: imports and rounds would start real processes. The
    # worker is tested with the rounds; tests that check the start record it themselves.
    started: list[Workspace] = []
    monkeypatch.setattr(rounds, "ensure_worker", lambda ws, **_: started.append(ws) or True)
    ws = Workspace(url, data_dir=data_dir)
    project = ws.create_project(
        "tiny",
        CLASSES,
        # The CNN learner: rounds run in-process here without a representation stage (the
        # default embedding learner is exercised by the services and browser tests).
        settings={
            "retrain_every": 0,
            "audit_share": 0.0,
            "members": 2,
            "epochs": 1,
            "learner": "cnn",
            "strategy": "bald",
        },
    )
    write_images(tmp_path / "images", 30)
    report = project.import_images(tmp_path / "images")
    assert len(report.accepted) == 30
    yield ws
    st.cache_resource.clear()
    ws.close()


@pytest.fixture
def project(app_env: Workspace) -> Project:
    return app_env.project("tiny")


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT_S)


def signed_in(name: str = "ana", page: str | None = None) -> AppTest:
    """The app with `name` typed into the who-is-labeling form, on `page` (default: label)."""
    at = new_app().run()
    assert not at.exception, at.exception
    if page is not None:
        at.switch_page(f"{PAGES}/{page}").run()
    at.text_input(key="annotator_name").input(name)
    at.button(key="annotator_start").click().run()
    assert not at.exception, at.exception
    return at
