"""Pieces the pages share: safe text, crisp images, the status panel and the annotator gate."""

from __future__ import annotations

import base64
import html
import io
import re
from functools import lru_cache

import streamlit as st
from PIL import Image, UnidentifiedImageError

from activelearn import ActivelearnError, Project, ProjectStatus, RoundInfo, Task, Workspace
from activelearn.errors import InvalidAnnotator
from activelearn.ingest.decode import displayable
from activelearn.services.settings import STRATEGIES
from activelearn.services.workspace import validate_annotator
from activelearn.ui import state

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$>])")
STATUS_POLL_SECONDS = 2.0
LABEL_IMAGE_PIXELS = 336  # 28 px digits become 12x: big, and an integer factor keeps pixels square

STRATEGY_NAMES = {name: strategy.label for name, strategy in STRATEGIES.items()}


def md(text: object) -> str:
    """User text made safe inside Markdown: HTML entities and Markdown syntax are escaped."""
    escaped = html.escape(str(text), quote=False)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escaped)


def show_error(error: Exception) -> None:
    st.error(str(error), icon=":material/error:")


# ------------------------------------------------------------------ images


@lru_cache(maxsize=2048)
def upscaled_png(path: str, target: int) -> bytes:
    """The image as PNG bytes about `target` pixels on its longer side: small images enlarged by
    a whole factor with nearest-neighbour (no blur), large ones shrunk (so a 40-megapixel photo
    is never sent to the browser whole). Shown as the model sees it: upright, 8-bit.

    Raises OSError with a plain message when the file is gone or not an image.
    """
    try:
        with Image.open(path) as image:
            image.draft(None, (target, target))  # JPEG: decode at a reduced scale when large
            picture = displayable(image)
    except FileNotFoundError as error:
        raise OSError(f"the image file is missing: {path}") from error
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise OSError(f"the file is not a readable image: {path}") from error
    if max(picture.size) > target:
        picture.thumbnail((target, target), Image.Resampling.LANCZOS)
    factor = max(1, target // max(picture.size))
    if factor > 1:
        picture = picture.resize(
            (picture.width * factor, picture.height * factor), Image.Resampling.NEAREST
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)  # speed over size: it is local
    return buffer.getvalue()


def png_data_uri(path: str, target: int) -> str:
    """The image inline as a data URI: raises OSError like upscaled_png (which caches)."""
    return "data:image/png;base64," + base64.b64encode(upscaled_png(path, target)).decode("ascii")


def png_data_uri_or_blank(path: str, target: int) -> str:
    """png_data_uri, or an empty string when the file cannot be read (the alt text shows)."""
    try:
        return png_data_uri(path, target)
    except OSError:
        return ""


def thumbnail_data_uri(path: str) -> str:
    """A small inline PNG for table cells; empty when the file cannot be read."""
    try:
        return png_data_uri(path, 56)
    except OSError:
        return ""


def show_image(path: str, *, target: int = LABEL_IMAGE_PIXELS, caption: str | None = None) -> None:
    """The sample, crisp and large, inline in the page.

    Inline (a data URI) rather than a media-file URL: the browser then needs no second request,
    which under load waited for the whole fragment to finish and doubled key-press latency.
    """
    try:
        uri = png_data_uri(path, target)
    except OSError as error:
        st.warning(f"Cannot show this sample: {error}.", icon=":material/broken_image:")
        return
    st.image(uri, caption=caption, width="content")


# ------------------------------------------------------------------ words for the annotator


def why_chosen(task: Task) -> str:
    """One sentence (Markdown, no user text) saying why the queue served this sample."""
    if task.strategy == "cold_start" and task.scores:
        # Held since before the first model; a round has scored it since.
        return (
            "Picked in random order before the first model was trained (cold start); "
            "the scores below are from the latest round."
        )
    if task.strategy == "cold_start":
        return "Cold start: random order until the first model has been trained."
    if task.strategy == "cold_start_typical":
        why = md(task.reason) if task.reason else "a typical sample of the pool"
        return (
            f"Cold start: {why}, by TypiClust on the pool's embeddings (no model yet: the first "
            "labels cover the pool's clusters)."
        )
    if task.strategy == "audit":
        return "Audit sample: drawn at random and held out to measure accuracy honestly."
    if task.strategy == "unscored":
        return "Imported after the last round, so the model has not ranked it yet."
    if task.strategy == "undo":
        return "Brought back by undo."
    name = STRATEGY_NAMES.get(task.strategy, task.strategy.replace("_", " "))
    rank = f"#{task.rank:,}" if task.rank is not None else "next"
    why = f": {md(task.reason)}" if task.reason else ""
    return f"Ranked **{rank}** by {md(name)} in round {task.round_id}{why}."


def round_phrase(info: RoundInfo) -> str:
    detail = info.detail or {}
    parts = [f"Round {info.id}: {info.phase}"]
    if info.phase == "training" and "member" in detail:
        parts.append(f"member {detail.get('member')}")
        if "epoch" in detail and "epochs" in detail:
            parts.append(f"epoch {detail['epoch']}/{detail['epochs']}")
    if info.phase == "scoring" and "scored" in detail and "total" in detail:
        parts.append(f"{int(detail['scored']):,}/{int(detail['total']):,} scored")
    return " · ".join(str(part) for part in parts)


def ranking_badge(status: ProjectStatus) -> tuple[str, str]:
    """(text, colour) for the "ranking is N labels old" badge."""
    if status.current_round_id is None:
        return "no ranking yet: cold start", "gray"
    age = status.labels_since_round
    noun = "label" if age == 1 else "labels"
    colour = "green" if age < 20 else "orange" if age < 100 else "red"
    return f"ranking is {age:,} {noun} old", colour


# ------------------------------------------------------------------ status panel


def status_panel(ws: Workspace, project: Project, *, poll: bool = True) -> None:
    """Labeled / total, labels since the last round, the round's live progress: polled every
    STATUS_POLL_SECONDS unless `poll` is False (then drawn once per page run).

    Inside one container: a progress bar or warning that comes and goes must not move the
    widgets below it to new positions (Streamlit would remount them, losing their state).
    """
    with st.container(key="status_box"):
        st.fragment(_status_fragment, run_every=STATUS_POLL_SECONDS if poll else None)(ws, project)


def _status_fragment(ws: Workspace, project: Project) -> None:
    try:
        status = project.status()
        last = project.last_round()  # one read: an active round is always the newest
    except ActivelearnError as error:
        show_error(error)
        return
    active = last if last is not None and last.status in ("queued", "running") else None
    with st.container(
        key="status_panel", horizontal=True, vertical_alignment="center", gap="medium"
    ):
        st.markdown(
            f"**{status.n_labeled + status.n_eval:,}** / {status.n_pool + status.n_eval:,} labeled"
        )
        st.markdown(f"**{status.labels_since_round:,}** since last round")
        text, colour = ranking_badge(status)
        st.badge(text, color=colour, icon=":material/schedule:")
        if active is not None:
            st.badge(
                f"round {active.id} {active.status}", color="blue", icon=":material/model_training:"
            )
    if active is not None:
        st.progress(min(max(active.progress, 0.0), 1.0), text=round_phrase(active))
        if active.status == "queued":
            # Also covers a worker that exited idle just as the round was queued.
            problem = state.kick_worker(ws)
            if problem is not None:
                st.warning(problem, icon=":material/warning:")
    elif last is not None and last.status == "failed":
        after = (
            "Labeling continues with the previous ranking."
            if status.current_round_id is not None
            else "Labeling continues in random order: there is no model yet."
        )
        st.warning(
            f"Round {last.id} failed: {md(last.error or 'no reason given')}. {after}",
            icon=":material/warning:",
        )
    if status.pool_exhausted:
        st.success(
            "The pool is exhausted: every pool sample has a label. Import more images on the "
            "Project setup page, or review the labels.",
            icon=":material/task_alt:",
        )
    st.space("small")  # room for the image's hover toolbar below


# ------------------------------------------------------------------ page scaffolding


def release_held(ws: Workspace, key: str) -> None:
    """Give back the tasks a labeling page holds under `key` (label: one, grid: a page), so a
    sample is not left leased to someone who moved on (another page, another name)."""
    held = st.session_state.pop(key, None)
    if held is None:
        return
    project_id, annotator, tasks = held
    tasks = tasks if isinstance(tasks, list) else [tasks]
    project = next((p for p in ws.projects() if p.id == project_id), None)
    if project is None:
        return
    for task in tasks:
        if task is None:
            continue
        try:
            project.release(task.id, annotator=annotator)
        except ActivelearnError as error:  # e.g. the lease already ran out: nothing to give
            state.log.info("could not release task %s: %s", task.id, error)


def _change_annotator(ws: Workspace) -> None:
    release_held(ws, state.LABEL_TASK_KEY)
    release_held(ws, state.GRID_TASKS_KEY)
    state.forget_annotator()


def sidebar_identity(ws: Workspace) -> None:
    name = state.annotator()
    if name is None:
        return
    role = state.role()
    suffix = "" if state.open_mode() or role is None else f" ({role})"
    st.sidebar.caption(f"Labeling as **{md(name)}**{suffix}")
    if state.logged_in_user() is not None:
        st.sidebar.button("Log out", key="logout", on_click=st.logout)
    elif state.open_mode():
        st.sidebar.button(
            "Change annotator", key="annotator_change", on_click=_change_annotator, args=(ws,)
        )
    else:
        st.sidebar.button("Log out", key="logout", on_click=_change_annotator, args=(ws,))


def known_spelling(project: Project, name: str) -> str:
    """The spelling already used in the project for a name typed in another case ("Ana" when
    "ana" has labeled before), so one person is one annotator; else the name as typed."""
    try:
        known = project.labels()["annotator"].unique().tolist()
    except ActivelearnError:
        return name
    matches = sorted(str(other) for other in known if str(other).casefold() == name.casefold())
    return name if not matches or name in matches else matches[0]


def require_annotator(project: Project | None = None) -> str:
    """The acting user's name; until there is one, ask for it (a name in open mode, a log-in
    once the server has leads) and stop the page. With a project, a name typed in another case
    takes the spelling the project already knows."""
    name = state.annotator()
    if name and (state.open_mode() or state.role() is not None):
        return name
    if name:
        st.warning(
            f"You are logged in as {md(name)}, but this server does not know you yet: ask a "
            "project lead to add you.",
            icon=":material/lock:",
        )
        st.stop()
    if state.open_mode():
        _name_form(project)
    else:
        _login_form()
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises; this keeps the type checker honest


def _name_form(project: Project | None) -> None:
    st.subheader("Who is labeling?")
    if state.login_configured():
        st.button("Log in", key="login", type="primary", on_click=st.login)
        st.stop()
    with st.form("annotator_form", border=False, width=420):
        typed = st.text_input(
            "Your name",
            key="annotator_name",
            max_chars=200,
            placeholder="e.g. ana",
            help="Stored with every label you give, so the team can see who labeled what.",
        )
        submitted = st.form_submit_button("Start labeling", key="annotator_start", type="primary")
    if submitted:
        try:
            name = validate_annotator(typed)
            state.set_annotator(known_spelling(project, name) if project is not None else name)
        except InvalidAnnotator:
            st.error("Please type a name (printable characters only).")
        except ActivelearnError as error:
            show_error(error)
        else:
            st.rerun()


def _login_form() -> None:
    st.subheader("Log in")
    if state.login_configured():
        st.button("Log in with your organisation", key="login", on_click=st.login)
    with st.form("login_form", border=False, width=420, clear_on_submit=True):
        typed = st.text_input("Name", key="login_name", max_chars=200)
        password = st.text_input("Password", key="login_password", type="password")
        submitted = st.form_submit_button("Log in", key="login_submit", type="primary")
    if submitted:
        try:
            state.log_in(typed, password)
        except ActivelearnError as error:
            show_error(error)
        else:
            st.rerun()


def page_start(title: str) -> tuple[Workspace, Project | None]:
    """Sidebar (project switcher, who is labeling) and the page title."""
    ws = state.workspace()
    state.write_cookie()
    project = state.project_picker(ws)
    sidebar_identity(ws)
    st.title(title)
    return ws, project


def labeling_page_start(title: str, *, other_page_key: str) -> tuple[Project, str] | None:
    """What the label and grid pages open with: page_start, the annotator gate and the status
    panel. `other_page_key`: the other labeling page's held tasks, dropped on a switch. None
    (with a note) when there is no project."""
    ws, project = page_start(title)
    if project is None:
        st.info("No project yet: create one on the Project setup page.")
        return None
    annotator = require_annotator(project)
    # The other page's samples go back to the queue: held on, they would be served here later
    # under a stale reason (a cold-start pick shown after round 1).
    release_held(ws, other_page_key)
    status_panel(ws, project)
    return project, annotator
