"""What every page shares: the cached workspace, the chosen project and who is labeling."""

from __future__ import annotations

import logging
import os
from typing import Any

import streamlit as st

from activelearn import Project, Workspace
from activelearn.services import rounds

PROJECT_KEY = "project_name"  # plain session value: survives page switches, unlike widget state
PICKER_KEY = "project_picker"
ANNOTATOR_KEY = "annotator"
# The tasks on screen, per page: (project id, annotator, Task | None) and (.., list[Task]).
# A full render of one page drops the other's, since the grid may label the label page's task.
LABEL_TASK_KEY = "label_task"
GRID_TASKS_KEY = "grid_tasks"
log = logging.getLogger("activelearn.ui")
DEMO_SPINNER = "Preparing the demo project: importing 5,000 MNIST digits (first start only)…"


@st.cache_resource(show_spinner=False)
def _workspace(url: str | None, data_dir: str | None) -> Workspace:
    return Workspace(url, data_dir=data_dir)


def workspace() -> Workspace:
    """The app's workspace: one engine per database for all sessions of this server.

    The environment is part of the cache key, so tests that point ACTIVELEARN_DB_URL at a fresh
    file get a fresh workspace.
    """
    url = os.environ.get("ACTIVELEARN_DB_URL") or None
    data_dir = os.environ.get("ACTIVELEARN_DATA_DIR") or None
    ws = _workspace(url, data_dir)
    if not ws.projects():
        with st.spinner(DEMO_SPINNER):
            _ensure_demo(ws)
    return ws


@st.cache_resource(show_spinner=False, hash_funcs={Workspace: id})
def _ensure_demo(ws: Workspace) -> Project:
    # Cached so that sessions opening at the same time import the demo once.
    return ws.ensure_demo()


@st.cache_resource(show_spinner=False, hash_funcs={Workspace: id})
def _project(ws: Workspace, name: str) -> Project:
    return ws.project(name)


def project_by_name(ws: Workspace, name: str) -> Project:
    """A cached Project handle (it holds ids only, so sharing it between sessions is safe)."""
    return _project(ws, name)


def project_names(ws: Workspace) -> list[str]:
    return [project.name for project in ws.projects()]


def select_project(name: str) -> None:
    """Make `name` the current project of this browser session (e.g. after creating it)."""
    if st.session_state.get(PROJECT_KEY) != name:
        # Forms showing the old project's values (settings) must start again from the new one's.
        for key in [key for key in st.session_state if str(key).startswith("setting_")]:
            del st.session_state[key]
    st.session_state[PROJECT_KEY] = name


def current_project(ws: Workspace, names: list[str] | None = None) -> Project | None:
    """The project chosen in this session; the demo (or the first project) by default.
    `names`: the project names when the caller has them already."""
    names = project_names(ws) if names is None else names
    if not names:
        return None
    chosen = st.session_state.get(PROJECT_KEY)
    if chosen not in names:
        chosen = "demo" if "demo" in names else names[0]
        st.session_state[PROJECT_KEY] = chosen
    return project_by_name(ws, chosen)


def project_picker(ws: Workspace) -> Project | None:
    """The sidebar's project switcher, shown on every page."""
    names = project_names(ws)
    project = current_project(ws, names)
    if project is None:
        return None
    # Widget state is dropped on pages that do not draw the widget, so the choice lives under
    # PROJECT_KEY and is copied into the widget before it is drawn.
    if st.session_state.get(PICKER_KEY) != project.name:
        st.session_state[PICKER_KEY] = project.name
    st.sidebar.selectbox(
        "Project",
        names,
        key=PICKER_KEY,
        on_change=lambda: select_project(st.session_state[PICKER_KEY]),
    )
    return project


# ------------------------------------------------------------------ who is labeling


def login_configured() -> bool:
    """True when secrets.toml has an [auth] section, i.e. st.login can be used."""
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return False


def logged_in_user() -> str | None:
    """The OIDC user's e-mail (or name) when st.login is configured and the user logged in."""
    user: Any = st.user
    try:
        if not user.get("is_logged_in"):
            return None
        return str(user.get("email") or user.get("name") or "").strip() or None
    except (AttributeError, KeyError):
        return None


def annotator() -> str | None:
    """Who is labeling in this browser session, or None until they say so."""
    return logged_in_user() or st.session_state.get(ANNOTATOR_KEY)


def set_annotator(name: str) -> None:
    st.session_state[ANNOTATOR_KEY] = name.strip()


def forget_annotator() -> None:
    st.session_state.pop(ANNOTATOR_KEY, None)


# ------------------------------------------------------------------ background rounds


def kick_worker(ws: Workspace) -> str | None:
    """Make sure a background worker runs queued rounds; returns why one could not start.

    Every place the UI can queue a round calls this (retrain now, the automatic trigger after a
    label, and the status panel while a round waits), so a queued round never waits for a
    worker nobody started.
    """
    try:
        rounds.ensure_worker(ws)
    except OSError as error:
        # Labels are already stored; say why training waits instead of failing the page.
        log.warning("could not start a background worker: %s", error)
        return (
            f"The background worker could not start ({error}); the round stays queued. "
            "Start one on the server with: activelearn worker"
        )
    return None
