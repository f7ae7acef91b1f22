"""What every dashboard chart shares: the Chart record, colours, titles, escaping, the layout.

Plotly renders a subset of HTML in titles, tick labels, legends and hover text, so every piece
of user text goes through `escape` before it reaches a figure.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

import plotly.graph_objects as go

from activelearn.score_fields import SCORE_FIELD_LIST

ENSEMBLE_COLOR = "#1f77b4"
RANDOM_COLOR = "#ff7f0e"
MEMBER_COLOR = "rgba(120, 120, 120, 0.55)"
LATEST_COLOR = "rgba(31, 119, 180, 0.65)"
PREVIOUS_COLOR = "rgba(160, 160, 160, 0.55)"
METRIC_TITLES = {
    "accuracy": "Accuracy",
    "nll": "Negative log-likelihood (nats)",
    "ece": "Expected calibration error",
}
METRIC_READING = {
    "accuracy": "higher is better",
    "nll": "lower is better; it punishes confident mistakes",
    "ece": "lower is better; 0 means confidence matches accuracy",
}
SCORE_TITLES = {field.name: field.axis for field in SCORE_FIELD_LIST}


@dataclass(frozen=True)
class Chart:
    figure: go.Figure
    caption: str


def escape(text: object) -> str:
    """User text made safe for Plotly (which renders <b>, <a href>, <br>, ...).

    Quotes become numeric entities: Plotly decodes only a few named ones (&amp; &lt; &gt; but
    not &quot;), so html.escape's `&quot;` would be drawn literally in a class name.
    """
    return html.escape(str(text), quote=False).replace('"', "&#34;").replace("'", "&#39;")


def file_name(path: object) -> str:
    """The last part of a stored path, for hover text and captions (unescaped)."""
    return PurePath(str(path)).name or str(path)


def layout(figure: go.Figure, *, title: str, x_title: str, y_title: str) -> go.Figure:
    figure.update_layout(
        title={"text": title},
        xaxis_title={"text": x_title},
        yaxis_title={"text": y_title},
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": -0.35, "x": 0},
    )
    return figure


def band(
    x: Sequence[float],
    mean: Sequence[float],
    se: Sequence[float],
    *,
    name: str,
    color: str,
) -> go.Scatter:
    """A filled ±1 standard-error band: the upper edge left to right, the lower one back."""
    upper = [m + s for m, s in zip(mean, se, strict=True)]
    lower = [m - s for m, s in zip(mean, se, strict=True)]
    return go.Scatter(
        x=[*x, *reversed(x)],
        y=[*upper, *reversed(lower)],
        fill="toself",
        fillcolor=color,
        line={"width": 0},
        hoverinfo="skip",
        name=name,
        showlegend=True,
        opacity=0.25,
    )
