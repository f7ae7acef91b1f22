"""What every dashboard chart shares: the Chart record, colours, titles (wrapped), escaping, the
layout, whole-number axes and the ±1 SE band.

Plotly renders a subset of HTML in titles, tick labels, legends and hover text, so every piece
of user text goes through `escape` before it reaches a figure.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pandas as pd
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
METRIC_BOUNDS = {"accuracy": (0.0, 1.0), "ece": (0.0, 1.0), "nll": (0.0, math.inf)}
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


# Plotly draws titles at about 7.4 px a character and never wraps them: 30 characters fit the
# narrowest chart the dashboard lays out (ui.dashboard_parts.MIN_CHART_PIXELS, 250 px).
TITLE_LINE_CHARS = 30


def wrap_title(title: str, width: int = TITLE_LINE_CHARS) -> str:
    """A chart title broken into lines of at most `width` characters (Plotly does not wrap: a
    long title is cut at the chart's edge). Titles hold no user text, so <br> is ours."""
    # A parenthesis stays whole on one line: "(ECE 0.031)", "(round 3)".
    words = re.split(r"\s+(?![^()]*\))", title.strip())
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines) or title


def layout(figure: go.Figure, *, title: str, x_title: str, y_title: str) -> go.Figure:
    text = wrap_title(title)
    lines = text.count("<br>") + 1
    figure.update_layout(
        title={"text": text},
        xaxis_title={"text": x_title},
        yaxis_title={"text": y_title},
        margin={"l": 60, "r": 20, "t": 40 + 22 * lines, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": -0.35, "x": 0},
    )
    return figure


def integer_ticks(values: Sequence[float]) -> dict[str, Any]:
    """Axis settings for a count (labels, epochs, samples): whole-number ticks only, never 24.5.
    Few distinct values are ticked exactly; more get Plotly's ticks, at least 1 apart."""
    distinct = sorted({round(float(v)) for v in values if v is not None and not math.isnan(v)})
    if 0 < len(distinct) <= 8:
        return {"tickmode": "array", "tickvals": distinct, "ticktext": [f"{v:,}" for v in distinct]}
    # Nine or more whole numbers span at least 8, so Plotly's ticks are at least 1 apart.
    return {"tickformat": ",d"}


def count_axis(values: Sequence[float]) -> dict[str, Any]:
    """A y axis of counts from zero: whole numbers only (one apart when the counts are small)."""
    top = max([v for v in values if v is not None] or [0])
    settings: dict[str, Any] = {"rangemode": "tozero", "tickformat": ",d"}
    if top <= 10:
        settings["dtick"] = 1
    return settings


def band(
    x: Sequence[float],
    mean: Sequence[float],
    se: Sequence[float],
    *,
    name: str,
    color: str,
    bounds: tuple[float, float] | None = None,
) -> go.Scatter:
    """A filled ±1 standard-error band: the upper edge left to right, the lower one back.
    `bounds`: (low, high) the metric cannot leave (accuracy in [0, 1]); the band is clipped."""
    low, high = bounds if bounds is not None else (-math.inf, math.inf)
    upper = [min(m + s, high) for m, s in zip(mean, se, strict=True)]
    lower = [max(m - s, low) for m, s in zip(mean, se, strict=True)]
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


def curve_with_band(
    figure: go.Figure,
    frame: pd.DataFrame,
    metric: str,
    *,
    name: str,
    legend_name: str,
    color: str,
    line: dict[str, Any],
    hover: str,
) -> bool:
    """A mean curve over labels, with its ±1 SE band when every point has one; True when the
    band was drawn."""
    se_column = f"{metric}_se"
    banded = bool(se_column in frame and len(frame) and frame[se_column].notna().all())
    if banded:
        figure.add_trace(
            band(
                frame["n_labels"].tolist(),
                frame[metric].tolist(),
                frame[se_column].tolist(),
                name=f"{name} ±1 SE",
                color=color,
                bounds=METRIC_BOUNDS.get(metric),
            )
        )
    figure.add_trace(
        go.Scatter(
            x=frame["n_labels"].tolist(),
            y=frame[metric].tolist(),
            mode="lines+markers",
            line=line,
            name=legend_name,
            hovertemplate=f"{hover}: %{{x}} labels: %{{y:.4f}}<extra></extra>",
        )
    )
    return banded
