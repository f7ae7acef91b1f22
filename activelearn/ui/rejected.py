"""The dashboard's list of samples marked "not a valid sample", each with a Restore button."""

from __future__ import annotations

import streamlit as st

from activelearn import ActivelearnError, Project
from activelearn.ui import charts, components

MAX_SHOWN = 50
MESSAGE_KEY = "rejected_message"


def _restore(project: Project, sample_id: int) -> None:
    try:
        project.restore_rejected(sample_id)
    except ActivelearnError as error:
        st.session_state[MESSAGE_KEY] = ("error", str(error))
        return
    st.session_state[MESSAGE_KEY] = ("success", f"Sample {sample_id} is back in the pool.")


def section_rejected(project: Project) -> None:
    st.caption(
        "Samples annotators marked as not valid (key X on the label page): they are out of the "
        "labeling queue, training, evaluation and scores. Restore one to put it back."
    )
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message is not None:
        kind, text = message
        (st.error if kind == "error" else st.success)(text)
    frame = project.rejected()
    if frame.empty:
        st.success("No rejected samples.")
        return
    st.markdown(f"**{len(frame):,}** rejected; the newest first.")
    for row in frame.head(MAX_SHOWN).itertuples(index=False):
        image, text, action = st.columns([1, 4, 2], vertical_alignment="center")
        with image:
            try:
                st.image(components.upscaled_png(row.path, 84), width=84)
            except OSError:
                st.caption("image missing")
        with text:
            reason = f": {components.md(row.reason)}" if isinstance(row.reason, str) else ""
            st.markdown(
                f"**#{row.sample_id}** {components.md(charts.file_name(row.path))}  \n"
                f"rejected by {components.md(row.annotator)} on "
                f"{row.rejected_at:%Y-%m-%d %H:%M}{reason}"
            )
        with action:
            st.button(
                "Restore",
                key=f"restore_rejected_{row.sample_id}",
                on_click=_restore,
                args=(project, int(row.sample_id)),
            )
