"""Chart builders for the dashboard: plain data (lists, dicts, DataFrames) -> Plotly figures.

Pure functions with no Streamlit import, so that every chart is testable on small fixtures. Each
builder returns a Chart: the figure (with a title and axis titles) and a one-line caption saying
how to read it. Plotly renders a subset of HTML in titles, tick labels, legends and hover text, so
every piece of user text (class names, file names, annotator names) goes through `html.escape`
before it reaches a figure (Markdown escaping is the page's job: activelearn.ui.components.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from activelearn.ui.chart_base import (
    ENSEMBLE_COLOR,
    LATEST_COLOR,
    MEMBER_COLOR,
    METRIC_READING,
    METRIC_TITLES,
    PREVIOUS_COLOR,
    RANDOM_COLOR,
    SCORE_TITLES,
    Chart,
    curve_with_band,
    escape,
    file_name,
    integer_ticks,
)
from activelearn.ui.chart_base import count_axis as _count_axis
from activelearn.ui.chart_base import layout as _layout

# ---------------------------------------------------------------- 1. learning curves


def learning_curve_chart(
    curves: pd.DataFrame,
    *,
    metric: str,
    simulation: pd.DataFrame | None = None,
) -> Chart:
    """One metric against the number of labels: ensemble (with ±1 SE band), each member, and the
    random-sampling simulation when given.

    curves: columns n_labels, member (-1 = ensemble), <metric>, and <metric>_se when available.
    simulation: columns n_labels, <metric>, <metric>_se (mean and standard error over repeats).
    """
    if metric not in METRIC_TITLES:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_TITLES)}")
    figure = go.Figure()
    ensemble = curves[curves["member"] == -1].sort_values("n_labels")
    members = curves[curves["member"] >= 0]
    drawn = {"members": not members.empty, "random": False, "band": False}
    for member, rows in members.groupby("member", sort=True):
        rows = rows.sort_values("n_labels")
        figure.add_trace(
            go.Scatter(
                x=rows["n_labels"].tolist(),
                y=rows[metric].tolist(),
                mode="lines",
                line={"color": MEMBER_COLOR, "width": 1, "dash": "dot"},
                name="members" if member == members["member"].min() else f"member {member}",
                legendgroup="members",
                showlegend=bool(member == members["member"].min()),
                hovertemplate=f"member {int(member)}<br>%{{x}} labels: %{{y:.4f}}<extra></extra>",
            )
        )
    if simulation is not None and not simulation.empty and metric in simulation:
        drawn["random"] = True
        curve_with_band(
            figure,
            simulation.sort_values("n_labels").dropna(subset=[metric]),
            metric,
            name="random sampling",
            legend_name="random sampling (simulation)",
            color=RANDOM_COLOR,
            line={"color": RANDOM_COLOR, "dash": "dash"},
            hover="random",
        )
    if not ensemble.empty:
        drawn["band"] = curve_with_band(
            figure,
            ensemble,
            metric,
            name="ensemble",
            legend_name="ensemble",
            color=ENSEMBLE_COLOR,
            line={"color": ENSEMBLE_COLOR, "width": 3},
            hover="ensemble",
        )
    _layout(figure, title=METRIC_TITLES[metric], x_title="Labels", y_title=METRIC_TITLES[metric])
    figure.update_xaxes(**integer_ticks(curves["n_labels"].tolist()))
    if metric in ("accuracy", "ece"):
        figure.update_yaxes(range=[0, 1.02], tickformat=".0%" if metric == "accuracy" else None)
    else:
        figure.update_yaxes(rangemode="tozero")
    parts = ["thick line the ensemble"]
    if drawn["members"]:
        parts.append("dotted grey lines its members")
    if drawn["band"]:
        parts.append("shading ±1 standard error")
    if drawn["random"]:
        parts.append("dashed orange random sampling (simulation)")
    caption = (
        f"{METRIC_TITLES[metric]} on the evaluation set ({METRIC_READING[metric]}) after each "
        f"round against the labels it trained on: {', '.join(parts)}; a flattening curve means "
        "more labels buy little."
    )
    return Chart(figure, caption)


# ---------------------------------------------------------------- 2. training curves


def training_curve_chart(epochs: pd.DataFrame, *, round_id: int | None = None) -> Chart:
    """Loss per epoch per member. epochs: columns member, epoch, train_loss, val_loss."""
    figure = go.Figure()
    for member, rows in epochs.groupby("member", sort=True):
        rows = rows.sort_values("epoch")
        figure.add_trace(
            go.Scatter(
                x=rows["epoch"].tolist(),
                y=rows["train_loss"].tolist(),
                mode="lines+markers",
                name=f"member {int(member)} train",
                legendgroup=f"member {int(member)}",
            )
        )
        if "val_loss" in rows and rows["val_loss"].notna().any():
            figure.add_trace(
                go.Scatter(
                    x=rows["epoch"].tolist(),
                    y=rows["val_loss"].tolist(),
                    mode="lines",
                    line={"dash": "dash"},
                    name=f"member {int(member)} validation",
                    legendgroup=f"member {int(member)}",
                )
            )
    title = "Training loss per epoch" + (f" (round {round_id})" if round_id is not None else "")
    _layout(figure, title=title, x_title="Epoch", y_title="Cross-entropy loss (nats)")
    if not epochs.empty:
        figure.update_xaxes(**integer_ticks(epochs["epoch"].tolist()))
    validated = "val_loss" in epochs and bool(epochs["val_loss"].notna().any())
    if validated:
        caption = (
            "Each member's training loss (solid) and validation loss (dashed) per epoch in the "
            "latest round: curves that still fall at the end want more epochs; validation loss "
            "rising while training loss falls means overfitting."
        )
    else:
        caption = (
            "Each member's training loss per epoch in the latest round (no validation split was "
            "held out): curves that still fall at the end want more epochs."
        )
    return Chart(figure, caption)


# ---------------------------------------------------------------- 3. pool uncertainty


def score_histogram_chart(
    *,
    score: str,
    edges: Sequence[float],
    latest: Sequence[int],
    previous: Sequence[int] | None = None,
    latest_label: str = "latest round",
    previous_label: str = "previous round",
) -> Chart:
    """Overlaid histograms (share of the pool per bin) of one score for two rounds.

    edges: (B + 1,) bin edges shared by both rounds; latest, previous: (B,) counts.
    """
    if len(edges) != len(latest) + 1:
        raise ValueError("edges must have one more entry than the counts")
    centers = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    widths = [b - a for a, b in itertools.pairwise(edges)]
    figure = go.Figure()
    series = [(previous, previous_label, PREVIOUS_COLOR), (latest, latest_label, LATEST_COLOR)]
    for counts, label, color in series:
        if counts is None:
            continue
        total = sum(counts) or 1
        figure.add_trace(
            go.Bar(
                x=centers,
                y=[c / total for c in counts],
                width=widths,
                name=escape(label),
                marker={"color": color},
                customdata=list(counts),
                hovertemplate="%{x:.3f}: %{y:.1%} of the pool (%{customdata})<extra></extra>",
            )
        )
    title_name = SCORE_TITLES.get(score, score.replace("_", " "))
    figure.update_layout(barmode="overlay")
    _layout(
        figure,
        title=f"{title_name.split(' (')[0]} over the pool",
        x_title=title_name,
        y_title="Share of the pool",
    )
    spread = f"How {title_name.split(' (')[0].lower()} is spread over the pool"
    if previous is not None:
        caption = (
            f"{spread}, this round (blue) over the previous one (grey): mass moving left means "
            "the model grows surer of the pool."
        )
    else:
        caption = f"{spread} this round (the first, so nothing to compare with yet)."
    return Chart(figure, caption)


def uncertainty_scatter_chart(points: pd.DataFrame, *, classes: Sequence[str]) -> Chart:
    """Expected entropy (aleatoric) against mutual information (epistemic), one point per sample.

    points: columns sample_id, path, expected_entropy, mutual_information, predicted_class,
    confidence. customdata[0] of every point is its sample id (for click selection).
    """
    names = [escape(name) for name in classes]
    figure = go.Figure()
    if not points.empty:
        predicted = points["predicted_class"].astype(int)
        labels = [names[i] if 0 <= i < len(names) else str(i) for i in predicted]
        files = [escape(file_name(p)) for p in points["path"]]
        figure.add_trace(
            go.Scattergl(
                x=points["expected_entropy"].tolist(),
                y=points["mutual_information"].tolist(),
                mode="markers",
                marker={
                    "size": 5,
                    "color": points["confidence"].tolist(),
                    "colorscale": "Viridis",
                    "cmin": 0.0,
                    "cmax": 1.0,
                    "colorbar": {"title": {"text": "confidence"}},
                    "opacity": 0.7,
                },
                customdata=list(
                    zip(points["sample_id"].astype(int).tolist(), files, labels, strict=True)
                ),
                hovertemplate=(
                    "sample %{customdata[0]}: %{customdata[1]}<br>predicted %{customdata[2]}"
                    "<br>aleatoric %{x:.3f}, epistemic %{y:.3f}<extra></extra>"
                ),
                name="pool samples",
            )
        )
    _layout(
        figure,
        title="Where the pool's uncertainty comes from",
        x_title="Expected entropy: aleatoric, the data's own ambiguity (nats)",
        y_title="Mutual information: epistemic, members disagree (nats)",
    )
    caption = (
        "One point per pool sample (a sample of the pool plus the top by mutual information): "
        "high up means the members disagree, so a label would teach the model; far right but low "
        "means the image itself is ambiguous. Click a point to see the image."
    )
    return Chart(figure, caption)


# ---------------------------------------------------------------- 4. calibration


def reliability_chart(
    *,
    edges: Sequence[float],
    confidence: Sequence[float | None],
    accuracy: Sequence[float | None],
    counts: Sequence[int],
    ece: float | None,
) -> Chart:
    """Reliability diagram: accuracy per confidence bin (bars) against the diagonal.

    edges: (B + 1,); confidence, accuracy, counts: (B,); empty bins have count 0 and are skipped.
    """
    keep = [i for i, n in enumerate(counts) if n > 0 and accuracy[i] is not None]
    centers = [(edges[i] + edges[i + 1]) / 2 for i in keep]
    widths = [edges[i + 1] - edges[i] for i in keep]
    figure = go.Figure()
    figure.add_trace(
        go.Bar(
            x=centers,
            y=[accuracy[i] for i in keep],
            width=widths,
            name="accuracy in bin",
            marker={"color": LATEST_COLOR},
            customdata=[[counts[i], confidence[i]] for i in keep],
            hovertemplate=(
                "confidence %{customdata[1]:.3f}: accuracy %{y:.3f} (%{customdata[0]} samples)"
                "<extra></extra>"
            ),
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dash", "color": "black"},
            name="perfect calibration",
        )
    )
    ece_text = f" (ECE {ece:.3f})" if ece is not None else ""
    _layout(
        figure,
        title=f"Reliability diagram, latest round{ece_text}",
        x_title="Confidence (top-class probability)",
        y_title="Accuracy",
    )
    figure.update_xaxes(range=[0, 1])
    figure.update_yaxes(range=[0, 1])
    caption = (
        "Accuracy of the evaluation samples in each confidence bin: bars below the diagonal mean "
        "the model is over-confident there, above it under-confident."
    )
    return Chart(figure, caption)


def ece_over_rounds_chart(rounds: pd.DataFrame) -> Chart:
    """ECE of the ensemble per round. rounds: columns round_id, n_labels, ece."""
    rows = rounds.dropna(subset=["ece"]).sort_values("n_labels")
    figure = go.Figure(
        go.Scatter(
            x=rows["n_labels"].tolist(),
            y=rows["ece"].tolist(),
            customdata=rows["round_id"].tolist(),
            mode="lines+markers",
            name="ensemble ECE",
            hovertemplate="round %{customdata}: %{x} labels, ECE %{y:.4f}<extra></extra>",
        )
    )
    _layout(
        figure,
        title="Calibration error over rounds",
        x_title="Labels",
        y_title="Expected calibration error",
    )
    figure.update_xaxes(**integer_ticks(rows["n_labels"].tolist()))
    figure.update_yaxes(rangemode="tozero")
    caption = (
        "The ensemble's expected calibration error after each round (lower is better): a falling "
        "line means its confidence can be trusted more as labels come in."
    )
    return Chart(figure, caption)


# ---------------------------------------------------------------- 5. selective classification


def accuracy_coverage_chart(
    *,
    coverage: Sequence[float],
    risk: Sequence[float],
    aurc: float | None = None,
    marked_coverage: float | None = None,
) -> Chart:
    """Accuracy (1 - risk) on the evaluation set when only the most confident share is kept."""
    accuracy = [1.0 - r for r in risk]
    figure = go.Figure(
        go.Scatter(
            x=list(coverage),
            y=accuracy,
            mode="lines",
            name="ensemble",
            hovertemplate="keep %{x:.0%}: accuracy %{y:.3f}<extra></extra>",
        )
    )
    if marked_coverage is not None:
        figure.add_vline(x=marked_coverage, line_dash="dot", line_color="red")
    aurc_text = f" (AURC {aurc:.3f})" if aurc is not None else ""
    _layout(
        figure,
        title=f"Accuracy against coverage{aurc_text}",
        x_title="Coverage: share of evaluation samples answered",
        y_title="Accuracy on the answered samples",
    )
    figure.update_xaxes(range=[0, 1], tickformat=".0%")
    caption = (
        "If the model only answers its most confident samples, how accurate are those answers: "
        "a curve that rises steeply to the left means abstaining on doubtful samples pays off."
    )
    return Chart(figure, caption)


def abstention_chart(
    *,
    thresholds: Sequence[float],
    abstained_share: Sequence[float],
    expected_accuracy: Sequence[float | None],
    threshold: float | None = None,
) -> Chart:
    """Share of the pool abstained on, and the expected accuracy on the rest, per threshold."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=list(thresholds),
            y=list(abstained_share),
            mode="lines",
            line={"color": ENSEMBLE_COLOR},
            name="pool abstained on",
            hovertemplate="threshold %{x:.2f}: %{y:.1%} abstained<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=list(thresholds),
            y=list(expected_accuracy),
            mode="lines",
            line={"color": RANDOM_COLOR},
            name="expected accuracy on the rest",
            hovertemplate="threshold %{x:.2f}: expected accuracy %{y:.3f}<extra></extra>",
        )
    )
    if threshold is not None:
        figure.add_vline(x=threshold, line_dash="dot", line_color="red")
    _layout(
        figure,
        title="Abstaining below a confidence threshold",
        x_title="Confidence threshold",
        y_title="Share / accuracy",
    )
    figure.update_yaxes(range=[0, 1.02])
    caption = (
        "Moving the threshold (dotted red line) right abstains on more of the pool (blue); the "
        "model's expected accuracy on what remains (orange) is its mean confidence there, honest "
        "only if it is calibrated (see the reliability diagram)."
    )
    return Chart(figure, caption)


# ---------------------------------------------------------------- 6. labels and people


def confusion_matrix_chart(matrix: Sequence[Sequence[int]], *, classes: Sequence[str]) -> Chart:
    """Heatmap of counts: rows the true class, columns the predicted class."""
    names = [escape(name) for name in classes]
    figure = go.Figure(
        go.Heatmap(
            z=[list(row) for row in matrix],
            x=names,
            y=names,
            colorscale="Blues",
            text=[[str(v) for v in row] for row in matrix],
            texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
            colorbar={"title": {"text": "samples"}},
        )
    )
    _layout(
        figure,
        title="Confusion matrix on the evaluation set",
        x_title="Predicted class",
        y_title="True class",
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    caption = (
        "Counts of evaluation samples by true class (rows) and predicted class (columns): the "
        "diagonal is right, a bright off-diagonal cell is a pair of classes the model confuses."
    )
    return Chart(figure, caption)


def labels_per_class_chart(counts: pd.DataFrame, *, classes: Sequence[str]) -> Chart:
    """Stacked bars of labeled samples per class. counts: columns label, split, count."""
    order = [escape(name) for name in classes]
    figure = go.Figure()
    for split, rows in counts.groupby("split", sort=True):
        by_label = dict(zip(rows["label"].map(escape), rows["count"].astype(int), strict=True))
        figure.add_trace(
            go.Bar(
                x=order,
                y=[by_label.get(name, 0) for name in order],
                name="training (pool)" if split == "pool" else f"held out ({escape(split)})",
            )
        )
    figure.update_layout(barmode="stack")
    _layout(figure, title="Labels per class", x_title="Class", y_title="Labeled samples")
    figure.update_xaxes(type="category")
    totals = counts.groupby("label")["count"].sum().tolist() if not counts.empty else []
    figure.update_yaxes(**_count_axis(totals))
    caption = (
        "How many samples carry each label, split into those the model trains on and those held "
        "out for evaluation: a short bar is a class the model has seen little of."
    )
    return Chart(figure, caption)


def labels_per_hour_chart(rows: pd.DataFrame) -> Chart:
    """Labels given per hour per annotator. rows: columns hour, annotator, count."""
    figure = go.Figure()
    for annotator, part in rows.groupby("annotator", sort=True):
        figure.add_trace(
            go.Bar(x=part["hour"].tolist(), y=part["count"].tolist(), name=escape(annotator))
        )
    figure.update_layout(barmode="stack")
    _layout(figure, title="Labels per hour", x_title="Hour (UTC)", y_title="Labels given")
    figure.update_xaxes(type="category")
    totals = rows.groupby("hour")["count"].sum().tolist() if not rows.empty else []
    figure.update_yaxes(**_count_axis(totals))
    caption = (
        "Live labels (undone ones excluded) given in each hour, stacked by annotator: the pace "
        "of labeling and who carries it."
    )
    return Chart(figure, caption)


def agreement_chart(
    matrix: Sequence[Sequence[float | None]],
    *,
    annotators: Sequence[str],
    shared: Sequence[Sequence[int]],
) -> Chart:
    """Pairwise agreement between annotators on samples both labeled.

    matrix[i][j]: share of shared samples where i and j gave the same label (None: none shared);
    shared[i][j]: how many samples they both labeled.
    """
    names = [escape(name) for name in annotators]
    figure = go.Figure(
        go.Heatmap(
            z=[list(row) for row in matrix],
            x=names,
            y=names,
            zmin=0.0,
            zmax=1.0,
            colorscale="RdYlGn",
            customdata=[list(row) for row in shared],
            hovertemplate="%{y} and %{x}: %{z:.0%} agree on %{customdata} samples<extra></extra>",
            colorbar={"title": {"text": "agreement"}},
        )
    )
    _layout(figure, title="Agreement between annotators", x_title="Annotator", y_title="Annotator")
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category", autorange="reversed")
    caption = (
        "For each pair of annotators, the share of the samples they both labeled on which they "
        "gave the same label: red cells point at unclear class definitions or a careless labeler."
    )
    return Chart(figure, caption)


# ---------------------------------------------------------------- 8. stopping advice


def stopping_chart(
    curve: pd.DataFrame, *, fit_n_labels: Sequence[float], fit_accuracy: Sequence[float]
) -> Chart:
    """The ensemble's accuracy with the straight line fitted to its last rounds (the slope the
    advice reads). curve: columns n_labels, accuracy."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=curve["n_labels"].tolist(),
            y=curve["accuracy"].tolist(),
            mode="lines+markers",
            line={"color": ENSEMBLE_COLOR},
            name="ensemble accuracy",
        )
    )
    if len(fit_n_labels) >= 2:
        figure.add_trace(
            go.Scatter(
                x=list(fit_n_labels),
                y=list(fit_accuracy),
                mode="lines",
                line={"dash": "dash", "color": "red"},
                name="recent slope",
            )
        )
    _layout(figure, title="Recent learning-curve slope", x_title="Labels", y_title="Accuracy")
    figure.update_xaxes(**integer_ticks(curve["n_labels"].tolist()))
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%")
    caption = (
        "The red line is fitted to the last rounds only: its steepness is the accuracy the next "
        "labels are likely to buy."
    )
    return Chart(figure, caption)
