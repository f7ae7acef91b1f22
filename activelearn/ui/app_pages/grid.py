"""Grid mode: a page of the most uncertain samples, pre-filled with the ensemble's guess."""

from __future__ import annotations

import streamlit as st

from activelearn import ActivelearnError, Project, Task
from activelearn.ui import components, state

GRID_KEY = state.GRID_TASKS_KEY
RESULT_KEY = "grid_result"
SIZE_KEY = "grid_size"
SIZES = [12, 16, 20, 24]
COLUMNS = 6
GRID_IMAGE_PIXELS = 112


def cell_key(task: Task) -> str:
    return f"grid_label_{task.id}"


def predicted_label(task: Task, classes: list[str]) -> str | None:
    """The ensemble's top class for the sample, or None before the first round."""
    value = task.scores.get("predicted_class")
    if value is None:
        return None
    index = int(value)
    return classes[index] if 0 <= index < len(classes) else None


def grid_tasks(project: Project, annotator: str, size: int) -> list[Task]:
    held = st.session_state.get(GRID_KEY)
    if held is not None and held[0] == project.id and held[1] == annotator and held[2]:
        return held[2]
    tasks = project.next_tasks(annotator, count=size)
    st.session_state[GRID_KEY] = (project.id, annotator, tasks)
    return tasks


def _on_submit(project: Project, annotator: str, tasks: list[Task]) -> None:
    """Store every chosen label and give blank cells back, in one transaction."""
    chosen = {task.id: st.session_state.get(cell_key(task)) or None for task in tasks}
    try:
        stored, released, queued = project.submit_page(chosen, annotator=annotator)
    except ActivelearnError as error:
        st.session_state[RESULT_KEY] = ("error", f"Nothing on this page was stored: {error}")
        return
    text = f"Stored {stored} label{'s' if stored != 1 else ''}."
    if released:
        text += f" {released} left blank went back to the queue."
    st.session_state[RESULT_KEY] = ("success", text)
    # These labels queued an automatic round: a worker must be there to run it.
    problem = state.kick_worker(project.workspace) if queued is not None else None
    if problem is not None:
        st.session_state[RESULT_KEY] = ("error", f"{text} {problem}")
    st.session_state.pop(GRID_KEY, None)
    for task in tasks:
        st.session_state.pop(cell_key(task), None)


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
    prefilled = any(predicted_label(task, classes) is not None for task in tasks)
    if not prefilled:
        st.info(
            "No model yet, so nothing is pre-filled: pick each label. Once the first round has "
            "trained, every cell starts at the ensemble's prediction and you only fix the wrong "
            "ones."
        )
    with st.form("grid_form", border=False):
        for start in range(0, len(tasks), COLUMNS):
            columns = st.columns(COLUMNS, gap="medium")
            for column, task in zip(columns, tasks[start : start + COLUMNS], strict=False):
                with column, st.container(border=True):
                    components.show_image(task.image, target=GRID_IMAGE_PIXELS)
                    guess = predicted_label(task, classes)
                    mutual_information = task.scores.get("mutual_information")
                    caption = f"sample {task.sample_id}"
                    if mutual_information is not None:
                        caption += f" · MI {mutual_information:.3f}"
                    st.caption(caption)
                    st.selectbox(
                        "Label",
                        classes,
                        index=classes.index(guess) if guess is not None else None,
                        key=cell_key(task),
                        placeholder="Choose…",
                        label_visibility="collapsed",
                    )
        st.form_submit_button(
            f"Submit {len(tasks)} labels",
            key="grid_submit",
            type="primary",
            icon=":material/done_all:",
            on_click=_on_submit,
            args=(project, annotator, tasks),
        )


def render() -> None:
    opened = components.labeling_page_start("Grid", other_page_key=state.LABEL_TASK_KEY)
    if opened is None:
        return
    project, annotator = opened
    st.caption(
        "The most uncertain samples, each pre-filled with the ensemble's prediction: correct the "
        "wrong ones and submit the page at once. Cells left blank go back to the queue."
    )
    st.segmented_control(
        "Samples per page",
        SIZES,
        key=SIZE_KEY,
        default=SIZES[0],
        on_change=_on_size_change,
        args=(project, annotator),
    )
    grid(project, annotator)


if __name__ == "__main__":
    render()
