"""What every page shares: the cached workspace, the chosen project and who is acting.

Who is acting: the OIDC user (st.login), else the user of this browser's log-in session. A
session is a random token kept in a cookie (set by a line of JavaScript, read back through
st.context.cookies when the page is reloaded) and in the database (activelearn.services.access:
only its hash, with an expiry). In open mode (no lead yet) a typed name gets such a session
too, so it survives a reload; with leads, people log in with a name and password.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import streamlit as st

from activelearn import Project, Workspace
from activelearn.ingest.roots import ROOTS_ENV, configured_roots
from activelearn.services import access, rounds

PROJECT_KEY = "project_name"  # plain session value: survives page switches, unlike widget state
PICKER_KEY = "project_picker"
ANNOTATOR_KEY = "annotator"  # who acts in this browser session (checked on every run)
TOKEN_KEY = "session_token"
COOKIE_KEY = "pending_cookie"  # (token or "" to delete, max-age seconds): written on next render
COOKIE_NAME = "activelearn_session"
# The tasks on screen, per page: (project id, annotator, Task | None) and (.., list[Task]).
# A full render of one page drops the other's, since the grid may label the label page's task.
LABEL_TASK_KEY = "label_task"
GRID_TASKS_KEY = "grid_tasks"
log = logging.getLogger("activelearn.ui")
DEMO_SPINNER = "Preparing the demo project: importing 5,000 MNIST digits (first start only)…"


@st.cache_resource(show_spinner=False)
def _workspace(url: str | None, data_dir: str | None, roots: str | None) -> Workspace:
    ws = Workspace(url, data_dir=data_dir, create=True)  # a fresh machine gets the demo
    # Every server path typed into the browser must lie under the import roots.
    ws.import_roots = configured_roots(ws.data_dir)
    if not roots:
        ws.import_roots[0].mkdir(parents=True, exist_ok=True)  # the default, data/import/
    return ws


def base_workspace() -> Workspace:
    """The app's workspace, bound to nobody: one engine per database for all sessions of this
    server. The environment is part of the cache key, so tests that point ACTIVELEARN_DB_URL at
    a fresh file get a fresh workspace."""
    url = os.environ.get("ACTIVELEARN_DB_URL") or None
    data_dir = os.environ.get("ACTIVELEARN_DATA_DIR") or None
    return _workspace(url, data_dir, os.environ.get(ROOTS_ENV) or None)


def workspace() -> Workspace:
    """The app's workspace acting as this browser's user (or as nobody before a log-in: then
    every action is refused once the server has a lead)."""
    ws = base_workspace()
    if not ws.projects():
        with st.spinner(DEMO_SPINNER):
            _ensure_demo(ws)
    return ws.as_user(annotator() or access.ANONYMOUS)


@st.cache_resource(show_spinner=False, hash_funcs={Workspace: id})
def _ensure_demo(ws: Workspace) -> Project:
    # Cached so that sessions opening at the same time import the demo once.
    return ws.ensure_demo()


@st.cache_resource(show_spinner=False, hash_funcs={Workspace: id})
def _project_id(ws: Workspace, name: str) -> int:
    return ws.project(name).id


def project_by_name(ws: Workspace, name: str) -> Project:
    """A Project handle acting as `ws`'s user (the id lookup is cached for all sessions)."""
    return Project(ws, _project_id(base_workspace(), name), name)


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
    # The choice lives under PROJECT_KEY (widget state is dropped on pages that do not draw the
    # widget) and is copied into the widget when it differs, which sends it to the browser.
    # After a page switch the browser drew the picker at its default now and then (the first
    # project, beside another's data): so the default is the current project too, except on a
    # run that sets the value (the value wins there; Streamlit warns about a default other than
    # index 0 given together with a value set through the session state).
    pushed = st.session_state.get(PICKER_KEY) != project.name
    if pushed:
        st.session_state[PICKER_KEY] = project.name
    st.sidebar.selectbox(
        "Project",
        names,
        index=0 if pushed else names.index(project.name),
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


def _cookie_token() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE_NAME)
    except (AttributeError, RuntimeError):
        return None
    return value if isinstance(value, str) and value else None


def annotator() -> str | None:
    """Who acts in this browser session, or None until they log in (or, in open mode, type a
    name). The session is checked against the database on every run, so a log-out elsewhere,
    an expiry or a removed account takes effect at once."""
    oidc = logged_in_user()
    if oidc:
        return oidc
    # On a fresh page load (a reload) this session has no answer yet: the browser's cookie has.
    token = st.session_state[TOKEN_KEY] if TOKEN_KEY in st.session_state else _cookie_token()
    user = access.session_user(base_workspace(), token) if token else None
    if user is None:
        st.session_state[TOKEN_KEY] = None  # this session's answer: not the cookie's again
        st.session_state.pop(ANNOTATOR_KEY, None)
        return None
    st.session_state[TOKEN_KEY] = token
    st.session_state[ANNOTATOR_KEY] = user
    return user


def role() -> str | None:
    """This browser's user's role: 'lead' in open mode, None when not logged in or unknown."""
    return base_workspace().role(annotator() or access.ANONYMOUS)


def open_mode() -> bool:
    return access.open_mode(base_workspace())


def _start_session(token: str, user: str, max_age_s: float) -> None:
    st.session_state[TOKEN_KEY] = token
    st.session_state[ANNOTATOR_KEY] = user
    st.session_state[COOKIE_KEY] = (token, int(max_age_s))


def set_annotator(name: str) -> None:
    """Open mode: remember a typed name for this browser (it survives a reload)."""
    name = name.strip()
    token = access.open_session(base_workspace(), name)
    _start_session(token, name, access.OPEN_SESSION_DAYS * 86400)


def log_in(name: str, password: str) -> None:
    """Password log-in; raises LoginFailed (or LoginThrottled) with a message to show."""
    name = name.strip()
    client = getattr(st.context, "ip_address", None)
    token = access.login(base_workspace(), name, password, client=client)
    _start_session(token, name, access.session_hours() * 3600)


def forget_annotator() -> None:
    """Log out (or, in open mode, change the name): the session ends here and in the cookie."""
    access.logout(base_workspace(), st.session_state.get(TOKEN_KEY) or _cookie_token())
    st.session_state[TOKEN_KEY] = None
    st.session_state.pop(ANNOTATOR_KEY, None)
    st.session_state[COOKIE_KEY] = ("", 0)


def write_cookie() -> None:
    """Hand a new (or deleted) session cookie to the browser: a line of JavaScript, the one way
    a Streamlit app sets a cookie. The token is random URL-safe text, never user input."""
    pending = st.session_state.pop(COOKIE_KEY, None)
    if pending is None:
        return
    token, max_age = pending
    secure = "; Secure" if str(getattr(st.context, "url", "") or "").startswith("https") else ""
    cookie = f"{COOKIE_NAME}={token}; Path=/; Max-Age={max_age}; SameSite=Strict{secure}"
    with st.sidebar:
        st.html(f"<script>document.cookie = {cookie!r};</script>", unsafe_allow_javascript=True)


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
