"""The label page: one sample at a time, keyboard shortcuts, undo, and why the sample was chosen."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from activelearn import ActivelearnError, LabelRecord, NothingToUndo, Project, Task
from activelearn.clock import utcnow
from activelearn.ui import components, state

TASK_KEY = state.LABEL_TASK_KEY
FLASH_KEY = "label_flash"  # one-shot message from the last key press
SHORTCUTS = [*"123456789", "0"]  # the first ten classes; more classes get buttons only
SKIP_SHORTCUT = "S"
UNDO_SHORTCUT = "U"
REJECT_SHORTCUT = "X"
REASON_KEY = "label_reject_reason"
RECENT_LIMIT = 10


def class_button_key(index: int) -> str:
    return f"label_class_{index}"


def shortcut_keys(classes: list[str]) -> list[str | None]:
    """The key for each class button: 1-9 then 0 for the first ten classes, None after.

    When the first ten class names are themselves distinct digits (the MNIST demo's "0".."9"),
    each class gets its own digit instead, so the key pressed is the label given.
    """
    first = classes[: len(SHORTCUTS)]
    if len(set(first)) == len(first) and all(len(name) == 1 and name.isdigit() for name in first):
        keys: list[str | None] = list(first)
    else:
        keys = list(SHORTCUTS[: len(first)])
    return keys + [None] * (len(classes) - len(first))


# ------------------------------------------------------------------ the current task


def current_task(project: Project, annotator: str) -> Task | None:
    """The task on screen, leasing the next one when there is none (or its lease ran out).

    "Nothing to label" is never kept: images imported meanwhile (on the setup page, or by a
    colleague) must show up without a click on "Check again".
    """
    held = st.session_state.get(TASK_KEY)
    if held is not None and held[0] == project.id and held[1] == annotator:
        task = held[2]
        if task is not None and task.expires_at > utcnow():
            return task
    task = project.next_task(annotator)
    st.session_state[TASK_KEY] = (project.id, annotator, task)
    return task


def _forget_task() -> None:
    st.session_state.pop(TASK_KEY, None)


def _flash(kind: str, text: str) -> None:
    st.session_state[FLASH_KEY] = (kind, text)


def on_label(project: Project, annotator: str, task_id: int, label: str) -> None:
    try:
        queued = project.submit(task_id, label=label, annotator=annotator)
    except ActivelearnError as error:
        _flash("error", str(error))
    else:
        # This label queued an automatic round: a worker must be there to run it.
        problem = state.kick_worker(project.workspace) if queued is not None else None
        if problem is not None:
            _flash("error", problem)
    _forget_task()


def on_skip(project: Project, annotator: str, task_id: int) -> None:
    try:
        project.skip(task_id, annotator=annotator)
    except ActivelearnError as error:
        _flash("error", str(error))
    _forget_task()


def on_reject(project: Project, annotator: str, task_id: int) -> None:
    reason = st.session_state.get(REASON_KEY) or None
    try:
        project.reject(task_id, annotator=annotator, reason=reason)
    except ActivelearnError as error:
        _flash("error", str(error))
    else:
        st.session_state[REASON_KEY] = ""
        _flash("info", "Marked as not a valid sample: it leaves the pool (a lead can restore it).")
    _forget_task()


def on_undo(project: Project, annotator: str) -> None:
    try:
        task = project.undo(annotator=annotator)
    except NothingToUndo:
        _flash("info", "Nothing to undo yet.")
        return
    except ActivelearnError as error:
        _flash("error", str(error))
        return
    st.session_state[TASK_KEY] = (project.id, annotator, task)
    _flash("info", "Label withdrawn (kept in the history): the sample is back.")


def apply_recent_edits(
    project: Project,
    annotator: str,
    records: list[LabelRecord],
    edited_rows: Mapping[Any, Mapping[str, Any]],
) -> int:
    """Store the label changes made in the recent-labels table; returns how many changed."""
    changed = 0
    for row, edits in edited_rows.items():
        new_label = edits.get("label")
        index = int(row)
        if new_label is None or not 0 <= index < len(records):
            continue
        record = records[index]
        if str(new_label) != record.label:
            project.relabel(record.sample_id, str(new_label), annotator)
            changed += 1
    return changed


def _on_recent_edit(project: Project, annotator: str, records: list[LabelRecord], key: str) -> None:
    edits = (st.session_state.get(key) or {}).get("edited_rows", {})
    try:
        changed = apply_recent_edits(project, annotator, records, edits)
    except ActivelearnError as error:
        _flash("error", str(error))
        return
    if changed:
        _flash("info", f"Changed {changed} earlier label{'s' if changed > 1 else ''}.")


# ------------------------------------------------------------------ rendering


def _why_panel(task: Task, classes: list[str]) -> None:
    st.markdown("**Why this sample**")
    st.markdown(components.why_chosen(task))
    if not task.scores:
        st.caption("Scores appear once the first round has trained the ensemble.")
        return
    a, b, c = st.columns(3)
    a.metric("Mutual information", f"{task.scores.get('mutual_information', 0.0):.3f}")
    b.metric("Predictive entropy", f"{task.scores.get('predictive_entropy', 0.0):.3f}")
    c.metric("Expected entropy", f"{task.scores.get('expected_entropy', 0.0):.3f}")
    if task.mean_probs is not None and len(task.mean_probs) == len(classes):
        frame = pd.DataFrame({"class": classes, "mean probability": task.mean_probs})
        # Long class names drawn under vertical bars squeeze the plot to nothing: lay them out
        # as rows instead, one per class.
        long_names = max(len(name) for name in classes) > 4
        st.bar_chart(
            frame,
            x="class",
            y="mean probability",
            sort=False,
            horizontal=long_names,
            height=max(160, 24 * len(classes)) if long_names else 160,
        )
    if task.member_predictions:
        votes = [
            classes[index] if 0 <= index < len(classes) else "?"
            for index in task.member_predictions
        ]
        majority = max(set(votes), key=votes.count)
        dissent = sum(vote != majority for vote in votes)
        shown = " · ".join(components.md(vote) for vote in votes)
        note = (
            "all members agree"
            if dissent == 0
            else f"{dissent} of {len(votes)} disagree with the majority"
        )
        st.markdown(f"Members' top class: {shown} ({note})")


def _recent_labels(project: Project, annotator: str, classes: list[str]) -> None:
    records = project.recent_labels(annotator, limit=RECENT_LIMIT)
    st.markdown("**Your last labels** (edit a label to change it)")
    if not records:
        st.caption("None yet.")
        return
    frame = pd.DataFrame(
        {
            "image": [components.thumbnail_data_uri(record.path) for record in records],
            "sample": [record.sample_id for record in records],
            "file": [record.original_name or "" for record in records],
            "label": [record.label for record in records],
            "labeled at": [record.labeled_at for record in records],
        }
    )
    # The key follows the newest label: the table is a new widget whenever its rows change, so
    # an edit made to the old rows is never replayed onto the new ones.
    key = f"recent_labels_{records[0].annotation_id}"
    st.data_editor(
        frame,
        key=key,
        hide_index=True,
        num_rows="fixed",
        disabled=["image", "sample", "file", "labeled at"],
        column_config={
            "image": st.column_config.ImageColumn("image", width="small"),
            "label": st.column_config.SelectboxColumn("label", options=classes, required=True),
            "labeled at": st.column_config.DatetimeColumn("labeled at (UTC)", format="HH:mm:ss"),
        },
        on_change=_on_recent_edit,
        args=(project, annotator, records, key),
        width="stretch",
    )


def _buttons(project: Project, annotator: str, task: Task, classes: list[str]) -> None:
    keys = shortcut_keys(classes)
    # Short names get even buttons; long ones a button as wide as the name needs (wrapping in
    # the row), with the full name on hover too: never a cut "Northern car…".
    long_names = max(len(name) for name in classes) > 10
    with st.container(key="class_buttons", horizontal=True, gap="small"):
        for index, name in enumerate(classes):
            st.button(
                components.md(name),
                key=class_button_key(index),
                type="primary",
                shortcut=keys[index],
                on_click=on_label,
                args=(project, annotator, task.id, name),
                help=components.md(name) if long_names else None,
                width="content" if long_names else 120 if len(classes) > 10 else 88,
            )
    with st.container(horizontal=True, gap="small"):
        st.button(
            "Skip",
            key="label_skip",
            icon=":material/skip_next:",
            shortcut=SKIP_SHORTCUT,
            on_click=on_skip,
            args=(project, annotator, task.id),
        )
        st.button(
            "Undo",
            key="label_undo",
            icon=":material/undo:",
            shortcut=UNDO_SHORTCUT,
            on_click=on_undo,
            args=(project, annotator),
        )
        st.button(
            "Not a valid sample",
            key="label_reject",
            icon=":material/block:",
            shortcut=REJECT_SHORTCUT,
            on_click=on_reject,
            args=(project, annotator, task.id),
            help="Broken, blank or off-topic: takes it out of the pool, training and scores",
        )
    with st.expander("Why not valid? (optional: type it, then click Not a valid sample)"):
        st.text_input(
            "Reason",
            key=REASON_KEY,
            max_chars=500,
            placeholder="e.g. blank, corrupt, not a digit",
        )


@st.fragment
def labeler(project: Project, annotator: str) -> None:
    """Everything a key press changes: a label reruns only this fragment, not the page."""
    flash = st.session_state.pop(FLASH_KEY, None)
    try:
        task = current_task(project, annotator)
        classes = project.classes
    except ActivelearnError as error:
        components.show_error(error)
        return
    if flash is not None:
        kind, text = flash
        (st.error if kind == "error" else st.info)(text)
    if task is None:
        st.success(
            "Nothing left to label: every pool sample is labeled or being labeled by someone "
            "else. Import more images on the Project setup page, or check back soon.",
            icon=":material/task_alt:",
        )
        with st.container(horizontal=True):
            st.button("Check again", key="label_refresh", on_click=_forget_task)
            st.button(
                "Undo",
                key="label_undo",
                shortcut=UNDO_SHORTCUT,
                on_click=on_undo,
                args=(project, annotator),
            )
        _recent_labels(project, annotator, classes)
        return
    left, right = st.columns([5, 6], gap="large")
    with left, st.container(key="label_image"):
        components.show_image(task.image)
        st.caption(
            f"**{components.md(task.shown_name)}** · Sample {task.sample_id} · task {task.id}"
        )
    with right:
        _buttons(project, annotator, task, classes)
        st.caption(
            "Press the key shown on a class to label, S to skip, X for not a valid sample, "
            "U to undo your last label."
        )
        _why_panel(task, classes)
    _recent_labels(project, annotator, classes)


def render() -> None:
    opened = components.labeling_page_start("Label", other_page_key=state.GRID_TASKS_KEY)
    if opened is not None:
        labeler(*opened)


# Streamlit runs page files as "__main__"; tests import this module for its helpers.
if __name__ == "__main__":
    render()
