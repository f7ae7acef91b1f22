"""Pieces the dashboard page draws with: rows of charts that wrap, a chart with its caption
(greyed when measured on too few evaluation samples), the small-evaluation-set notice, sample
galleries and the selected sample, and the send-back-for-review action with its message."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from activelearn import ActivelearnError, Project
from activelearn.services import dashboard as data
from activelearn.ui import charts, components, state

MESSAGE_KEY = "dashboard_message"
GALLERY_PIXELS = 112
# Below this many evaluation samples a figure measured on them is shown greyed and flagged: one
# sample more or less right moves accuracy by over 3 points, and its standard error is ~9 points.
MIN_TRUSTED_EVAL = 30
# Charts side by side wrap onto a new row rather than shrink below this width, where their
# titles (wrapped at chart_base.TITLE_LINE_CHARS) would be cut: three a row at 1280 px with the
# sidebar open, one a row at 800 px.
MIN_CHART_PIXELS = 250
CHART_ROW_CSS = f"""<style>
[class*="st-key-chart_row_"] {{ flex-wrap: wrap !important; }}
[class*="st-key-chart_row_"] > div {{
  flex: 1 1 {MIN_CHART_PIXELS}px !important; min-width: {MIN_CHART_PIXELS}px !important; }}
</style>"""


def chart_row(count: int, *, key: str) -> list[Any]:
    """`count` cells side by side for charts, as st.columns gives, except that they wrap onto a
    new row instead of getting narrower than MIN_CHART_PIXELS (CHART_ROW_CSS, on the page)."""
    row = st.container(horizontal=True, gap="small", key=f"chart_row_{key}")
    return [row.container() for _ in range(count)]


def show_chart(
    chart: charts.Chart, *, key: str, untrusted_n: int | None = None, **options: Any
) -> Any:
    """The chart and its caption. `untrusted_n`: it is measured on this few evaluation samples,
    so it is drawn greyed, marked, and its caption says so."""
    caption = chart.caption
    if untrusted_n is not None:
        chart.figure.update_traces(opacity=0.3)
        chart.figure.add_annotation(
            text=f"only {untrusted_n} evaluation sample{'s' if untrusted_n != 1 else ''}",
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            showarrow=False,
            font={"size": 16, "color": "#888"},
        )
        caption = (
            f"Greyed: measured on {untrusted_n} evaluation sample"
            f"{'s' if untrusted_n != 1 else ''}, too few to trust. {caption}"
        )
    event = st.plotly_chart(chart.figure, key=key, **options)
    st.caption(caption)
    return event


def eval_trust(details: data.RoundDetails) -> int | None:
    """None when the round's evaluation set is big enough to trust; else its size (0: none)."""
    return details.n_eval if details.n_eval < MIN_TRUSTED_EVAL else None


def eval_set_notice(details: data.RoundDetails) -> None:
    """Say plainly, above everything it affects, when the evaluation set is too small."""
    n = details.n_eval
    if n >= MIN_TRUSTED_EVAL:
        return
    if details.eval_source == "test":
        remedy = "Import a larger labeled test split."
    else:
        remedy = (
            "Evaluation samples come from the audit share (drawn at random and held out): keep "
            "labeling, or raise the audit share on the Project setup page."
        )
    if n == 0:
        st.warning(
            f"Round {details.round_id} had no evaluation samples, so its accuracy, calibration "
            f"and confusion matrix cannot be measured; they are left out below. {remedy}",
            icon=":material/warning:",
        )
        return
    st.warning(
        f"The evaluation set has only {n} sample{'s' if n != 1 else ''}: too small to trust "
        f"(one sample more or less right moves accuracy by {100 / n:.0f} points). Figures "
        f"measured on it are greyed out; trust them from about {MIN_TRUSTED_EVAL} samples. "
        f"{remedy}",
        icon=":material/warning:",
    )


def shown_name(names: dict[int, str], sample_id: int, path: object) -> str:
    """A sample's original file name (inside its folder or zip), else its stored file's name."""
    return names.get(int(sample_id)) or charts.file_name(path)


def gallery(
    frame: pd.DataFrame, classes: tuple[str, ...], *, score: str, names: dict[int, str]
) -> None:
    if frame.empty:
        st.caption("No samples.")
        return
    images: list[bytes] = []
    captions: list[str] = []
    for row in frame.itertuples(index=False):
        try:
            images.append(components.upscaled_png(str(row.path), GALLERY_PIXELS))
        except OSError:
            continue
        predicted = classes[row.predicted_class] if row.predicted_class < len(classes) else "?"
        name = shown_name(names, row.sample_id, row.path)
        captions.append(
            f"{components.md(name)} · {components.md(predicted)} · {getattr(row, score):.3f}"
        )
    if images:
        st.image(images, caption=captions, width=GALLERY_PIXELS)
    else:
        st.caption("The image files of these samples are missing.")


def show_selected_sample(
    event: Any, view: data.PoolView, classes: tuple[str, ...], project: Project
) -> None:
    points = []
    try:
        points = list(event.selection.points) if event is not None else []
    except AttributeError:
        points = []
    if not points:
        st.caption("Click a point of the scatter plot to see its image here.")
        return
    custom = points[0].get("customdata") or []
    if not custom:
        return
    sample_id = int(custom[0])
    row = view.points[view.points["sample_id"] == sample_id]
    if row.empty:
        return
    sample = row.iloc[0]
    left, right = st.columns([1, 3])
    with left:
        components.show_image(str(sample["path"]), target=GALLERY_PIXELS * 2)
    with right:
        predicted = int(sample["predicted_class"])
        name = classes[predicted] if predicted < len(classes) else str(predicted)
        file = shown_name(project.original_names([sample_id]), sample_id, sample["path"])
        st.markdown(
            f"**Sample {sample_id}** · {components.md(file)}  \n"
            f"Predicted **{components.md(name)}** with confidence {sample['confidence']:.3f}  \n"
            f"Mutual information {sample['mutual_information']:.3f} · expected entropy "
            f"{sample['expected_entropy']:.3f} · predictive entropy "
            f"{sample['predictive_entropy']:.3f}"
        )


def send_back(project: Project, sample_id: int) -> None:
    by = state.annotator() or "project lead"
    try:
        withdrawn = data.send_back_for_review(project, sample_id, by=by)
    except ActivelearnError as error:
        st.session_state[MESSAGE_KEY] = ("error", str(error))
        return
    st.session_state[MESSAGE_KEY] = (
        "success",
        f"Sample {sample_id} is back in the labeling queue ({withdrawn} label(s) withdrawn, "
        "kept in the history).",
    )


def show_message() -> None:
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message is not None:
        kind, text = message
        (st.error if kind == "error" else st.success)(text)
