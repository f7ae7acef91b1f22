"""Learning curves of the learners a project has used, side by side (ensembles only)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from activelearn.ui.chart_base import METRIC_TITLES, Chart, escape, layout

LEARNER_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b")


def learners_used(curves: pd.DataFrame) -> list[str]:
    if "learner" not in curves:
        return []
    return sorted(set(curves.loc[curves["member"] == -1, "learner"].dropna()))


def learner_comparison_chart(curves: pd.DataFrame, *, metric: str) -> Chart:
    """One ensemble curve per learner: curves has columns n_labels, member, learner, <metric>."""
    figure = go.Figure()
    ensembles = curves[curves["member"] == -1]
    for index, learner in enumerate(learners_used(curves)):
        rows = ensembles[ensembles["learner"] == learner].sort_values("n_labels")
        figure.add_trace(
            go.Scatter(
                x=rows["n_labels"].tolist(),
                y=rows[metric].tolist(),
                mode="lines+markers",
                line={"color": LEARNER_COLORS[index % len(LEARNER_COLORS)], "width": 3},
                name=escape(learner),
                hovertemplate=f"{escape(learner)}<br>%{{x}} labels: %{{y:.4f}}<extra></extra>",
            )
        )
    title = f"{METRIC_TITLES[metric]} by learner"
    layout(figure, title=title, x_title="Labels", y_title=METRIC_TITLES[metric])
    caption = (
        "The ensemble of each learner the project's rounds used, against the labels they "
        "trained on (same evaluation set); where the lines overlap in labels, the higher "
        "accuracy is the learner that needs fewer labels."
    )
    return Chart(figure=figure, caption=caption)
