"""The dashboard's embedding map: the pool in the representation's space, and its status."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from activelearn import Project
from activelearn.services import dashboard as data
from activelearn.ui import chart_base

COLOR_BY = {"Label": "label", "Prediction": "predicted", "Mutual information": "mi"}
UNLABELED_COLOR = "rgba(170, 170, 170, 0.35)"


def map_figure(view: data.EmbeddingMap, color_by: str, classes: list[str]) -> go.Figure:
    points = view.points
    figure = go.Figure()
    if color_by == "mi":
        figure.add_trace(
            go.Scattergl(
                x=points["x"],
                y=points["y"],
                mode="markers",
                marker={
                    "size": 5,
                    "color": points["mutual_information"].fillna(0.0),
                    "colorscale": "Viridis",
                    "colorbar": {"title": {"text": "MI (nats)"}},
                },
                text=[f"#{i}" for i in points["sample_id"]],
                hovertemplate="%{text}<br>MI %{marker.color:.3f}<extra></extra>",
                name="mutual information",
            )
        )
    else:
        column = "label" if color_by == "label" else "predicted"
        values = points[column]
        missing = values.isna()
        figure.add_trace(
            go.Scattergl(
                x=points.loc[missing, "x"],
                y=points.loc[missing, "y"],
                mode="markers",
                marker={"size": 4, "color": UNLABELED_COLOR},
                name="unlabeled" if column == "label" else "not scored",
                hoverinfo="skip",
            )
        )
        for name in classes:
            chosen = values == name
            if not np.any(chosen):
                continue
            figure.add_trace(
                go.Scattergl(
                    x=points.loc[chosen, "x"],
                    y=points.loc[chosen, "y"],
                    mode="markers",
                    marker={"size": 6 if column == "label" else 4},
                    name=chart_base.escape(name),
                    text=[f"#{i}" for i in points.loc[chosen, "sample_id"]],
                    hovertemplate="%{text}<extra>%{fullData.name}</extra>",
                )
            )
    return chart_base.layout(
        figure,
        title="The pool in the representation's space",
        x_title=f"1st principal axis ({view.explained[0]:.0%} of the variance)",
        y_title=f"2nd principal axis ({view.explained[1]:.0%})",
    )


def section_embedding_map(project: Project, round_id: int | None, classes: list[str]) -> None:
    status = project.representation_status()
    latest = status.latest
    if latest is not None and latest.status in ("queued", "running"):
        st.info(
            f"Representation job {latest.id} is {latest.status} ({latest.phase}, "
            f"{latest.progress:.0%}); rounds keep the previous embeddings until it finishes."
        )
    elif latest is not None and latest.status == "failed":
        st.error(f"The last representation job failed: {latest.error}")
    view = data.embedding_map(project, round_id)
    if view is None:
        st.caption(
            "No embeddings yet: the representation stage runs in the background worker after "
            "an import (seconds for the default HOG features)."
        )
        return
    current = status.current
    quality = (
        f"1-nearest-neighbour agreement of the {view.n_labeled:,} labeled pool samples: "
        f"{view.knn_accuracy:.1%} (how often a label matches its closest labeled neighbour's)."
        if view.knn_accuracy is not None
        else "Label two pool samples to measure the representation's quality."
    )
    backbone = (current.detail or {}).get("backbone", "ssl") if current is not None else "?"
    st.caption(
        f"Embeddings {view.version} ({backbone}, fitted on {current.n_images if current else 0:,} "
        f"pool images, never the test split). {quality}"
    )
    choice = st.radio("Colour by", list(COLOR_BY), horizontal=True, key="embedding_map_color")
    figure = map_figure(view, COLOR_BY[choice], classes)
    st.plotly_chart(figure, key="chart_embedding_map")
    shown = len(view.points)
    st.caption(
        f"{shown:,} of {view.n_pool:,} pool samples on the first two principal axes of the "
        "embeddings (a linear projection: clusters apart here are apart in the embedding). "
        "Unlabeled clusters are grey patches under Label."
    )
