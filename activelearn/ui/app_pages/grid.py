"""Grid mode: a page of the most uncertain samples, with the ensemble's guess as a suggestion."""

from __future__ import annotations

import streamlit as st

from activelearn import ActivelearnError, Project, Task
from activelearn.ui import components, state

GRID_KEY = state.GRID_TASKS_KEY
RESULT_KEY = "grid_result"
SIZE_KEY = "grid_size"
ROUND_KEY = "grid_round"  # the ranking (succeeded round id) the page on screen was leased under
SIZES = [12, 16, 20, 24]
GRID_IMAGE_PIXELS = 112
CELL_PIXELS = 190  # cells wrap to the width: 2 a row at 800 px with the sidebar, 4 at 1280
# Selected values and menu options show long class names in full, wrapped.
WRAP_CSS = """<style>
[class*="st-key-grid_label_"] div { white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; }
[data-baseweb="popover"] li { white-space: normal !important; height: auto !important; }
</style>"""


def cell_key(task: Task) -> str:
    return f"grid_label_{task.id}"


def accept_key(task: Task) -> str:
    return f"grid_accept_{task.id}"


def skip_key(task: Task) -> str:
    return f"grid_skip_{task.id}"


def predicted_label(task: Task, classes: list[str]) -> str | None:
    """The ensemble's top class for the sample, or None before the first round."""
    value = task.scores.get("predicted_class")
    if value is None:
        return None
    index = int(value)
    return classes[index] if 0 <= index < len(classes) else None


def grid_tasks(project: Project, annotator: str, size: int) -> list[Task]:
    """The page on screen; a new one when there is none, or when a round has finished since it
    was leased (its cold-start or old-ranking picks are given back for the new ranking)."""
    held = st.session_state.get(GRID_KEY)
    round_now = project.status().current_round_id
    if held is not None and held[0] == project.id and held[1] == annotator and held[2]:
        if st.session_state.get(ROUND_KEY) == round_now:
            return held[2]
        for task in held[2]:
            project.release(task.id, annotator=annotator)
    tasks = project.next_tasks(annotator, count=size)
    st.session_state[GRID_KEY] = (project.id, annotator, tasks)
    st.session_state[ROUND_KEY] = round_now
    return tasks


def decide(
    tasks: list[Task], classes: list[str], *, accept_all: bool
) -> tuple[dict[int, str], list[int], list[int]]:
    """What the annotator decided on the page: ({task id: label}, skipped ids, blank ids).

    A label picked in the cell wins; else an accepted suggestion (ticked in the cell, or every
    suggestion shown with accept_all); else a ticked skip; else the cell is not decided.
    A suggestion is never stored unless accepted.
    """
    labels: dict[int, str] = {}
    skipped: list[int] = []
    blank: list[int] = []
    for task in tasks:
        chosen = st.session_state.get(cell_key(task)) or None
        guess = predicted_label(task, classes)
        skip = bool(st.session_state.get(skip_key(task)))
        accepted = guess is not None and (
            bool(st.session_state.get(accept_key(task))) or (accept_all and not skip)
        )
        if chosen is not None:
            labels[task.id] = chosen
        elif accepted:
            labels[task.id] = guess
        elif skip:
            skipped.append(task.id)
        else:
            blank.append(task.id)
    return labels, skipped, blank


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _on_submit(project: Project, annotator: str, tasks: list[Task], accept_all: bool) -> None:
    """Store the decided labels; skip the skipped; give undecided cells back to the queue, after
    the next page is leased so they do not come straight back to the same annotator."""
    labels, skipped, blank = decide(tasks, project.classes, accept_all=accept_all)
    size = len(tasks)
    try:
        # Blank cells stay held by this annotator while the labels are stored and the next page
        # is leased (their leases keep them off it); then they go back to the queue.
        stored, _, queued = project.submit_page(labels, annotator=annotator)
        for task_id in skipped:
            project.skip(task_id, annotator=annotator)
        following = project.next_tasks(annotator, count=size + len(blank)) if blank else None
        for task_id in blank:
            project.release(task_id, annotator=annotator)
    except ActivelearnError as error:
        st.session_state[RESULT_KEY] = ("error", f"This page was not stored in full: {error}")
        return
    text = f"Stored {_plural(stored, 'label')}."
    if skipped:
        text += f" Skipped {len(skipped)}."
    if blank:
        text += f" {len(blank)} not decided went back to the queue for someone else."
    st.session_state[RESULT_KEY] = ("success", text)
    # These labels queued an automatic round: a worker must be there to run it.
    problem = state.kick_worker(project.workspace) if queued is not None else None
    if problem is not None:
        st.session_state[RESULT_KEY] = ("error", f"{text} {problem}")
    st.session_state.pop(GRID_KEY, None)
    if following is not None:
        released = set(blank)
        page = [task for task in following if task.id not in released][:size]
        st.session_state[GRID_KEY] = (project.id, annotator, page)
        st.session_state[ROUND_KEY] = project.status().current_round_id
    for task in tasks:
        for key in (cell_key(task), accept_key(task), skip_key(task)):
            st.session_state.pop(key, None)


def _on_size_change(project: Project, annotator: str) -> None:
    # Give the page back so the next one is leased at the new size, most informative first.
    held = st.session_state.pop(GRID_KEY, None)
    if held is None or held[0] != project.id or held[1] != annotator:
        return
    try:
        for task in held[2]:
            project.release(task.id, annotator=annotator)
    except ActivelearnError as error:
        st.session_state[RESULT_KEY] = ("error", str(error))


def _cell(task: Task, classes: list[str]) -> None:
    """One sample: image, its file name, a label picker, the model's suggestion and a skip."""
    name = task.shown_name
    with st.container(border=True, width=CELL_PIXELS, key=f"grid_cell_{task.id}"):
        # Inline <img> without st.image's fullscreen button: one Tab stop per control.
        st.html(
            f'<img src="{components.png_data_uri_or_blank(task.image, GRID_IMAGE_PIXELS)}" '
            f'alt="sample {task.sample_id}" style="max-width:100%;image-rendering:pixelated">'
        )
        mutual_information = task.scores.get("mutual_information")
        caption = components.md(name)
        if mutual_information is not None:
            caption += f" · MI {mutual_information:.3f}"
        st.caption(caption, help=f"sample {task.sample_id}")
        st.selectbox(
            f"Label for {components.md(name)}",
            classes,
            index=None,
            key=cell_key(task),
            placeholder="Not decided",
            label_visibility="collapsed",
        )
        guess = predicted_label(task, classes)
        if guess is not None:
            st.checkbox(f"Accept: {components.md(guess)}", key=accept_key(task))
        st.checkbox("Skip", key=skip_key(task), help="Can't tell: it goes behind the others.")


@st.fragment
def grid(project: Project, annotator: str) -> None:
    result = st.session_state.pop(RESULT_KEY, None)
    if result is not None:
        kind, text = result
        (st.error if kind == "error" else st.success)(text)
    size = int(st.session_state.get(SIZE_KEY) or SIZES[0])
    try:
        classes = project.classes
        tasks = grid_tasks(project, annotator, size)
    except ActivelearnError as error:
        components.show_error(error)
        return
    if not tasks:
        st.success(
            "Nothing left to label: every pool sample is labeled or held by someone else.",
            icon=":material/task_alt:",
        )
        return
    suggestions = sum(predicted_label(task, classes) is not None for task in tasks)
    if not suggestions:
        st.info(
            "No model yet, so there are no suggestions: pick each label. After the first round "
            "each cell shows the ensemble's guess, which you accept per cell or all at once."
        )
    # Long class names wrap in the pickers instead of being cut.
    st.html(WRAP_CSS)
    with st.form("grid_form", border=False):
        with st.container(horizontal=True, gap="small", key="grid_cells"):
            for task in tasks:
                _cell(task, classes)
        with st.container(horizontal=True, gap="small"):
            st.form_submit_button(
                "Submit the decided labels",
                key="grid_submit",
                type="primary",
                icon=":material/done_all:",
                on_click=_on_submit,
                args=(project, annotator, tasks, False),
                help="Undecided cells go back to the queue; skipped ones go behind the others.",
            )
            if suggestions:
                st.form_submit_button(
                    "Accept all suggestions shown and submit",
                    key="grid_accept_all",
                    icon=":material/playlist_add_check:",
                    on_click=_on_submit,
                    args=(project, annotator, tasks, True),
                    help="Every cell without a pick or a skip takes the model's suggestion.",
                )


def render() -> None:
    opened = components.labeling_page_start("Grid", other_page_key=state.LABEL_TASK_KEY)
    if opened is None:
        return
    project, annotator = opened
    st.caption(
        "The most uncertain samples. Pick a label, accept the model's suggestion, or skip; "
        "a cell left undecided is not stored and goes back to the queue for someone else."
    )
    st.segmented_control(
        "Samples per page",
        SIZES,
        key=SIZE_KEY,
        default=SIZES[0],
        required=True,
        on_change=_on_size_change,
        args=(project, annotator),
    )
    grid(project, annotator)


if __name__ == "__main__":
    render()
