"""Uncertainty dashboard: is the model learning, can its confidence be trusted, when to stop.

A page script (st.navigation runs it top to bottom). Data comes from
activelearn.services.dashboard, cached per round (a finished round never changes) or per label
version (labels do); figures come from activelearn.ui.charts, drawn with the pieces in
activelearn.ui.dashboard_parts; user text goes through
components.md (Markdown) or charts.escape (Plotly).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from activelearn import ActivelearnError, Project
from activelearn.core.ood_text import OOD_SCORE_MEANING
from activelearn.services import dashboard as data
from activelearn.services import export
from activelearn.ui import charts, components
from activelearn.ui.dashboard_parts import (
    CHART_ROW_CSS,
    chart_row,
    eval_set_notice,
    eval_trust,
    gallery,
    send_back,
    show_chart,
    show_message,
    show_selected_sample,
    shown_name,
)
from activelearn.ui.embedding_map import section_embedding_map
from activelearn.ui.learner_chart import learner_comparison_chart, learners_used
from activelearn.ui.rejected import section_rejected

THRESHOLD_KEY = "dashboard_threshold"
SCATTER_KEY = "dashboard_scatter"
MAX_LABEL_ERRORS_SHOWN = 20
VERDICT_STYLE = {
    "keep labeling": (st.success, ":material/trending_up:"),
    "diminishing returns": (st.warning, ":material/trending_flat:"),
    "stop": (st.info, ":material/flag:"),
}

# ------------------------------------------------------------------ cached data
# The leading underscore keeps the Project out of the cache key; `key` (database URL, project
# id) and the round ids / label version are the key.


@st.cache_data(show_spinner=False, max_entries=16)
def _learning(_project: Project, key: tuple[str, int], round_id: int, sims: tuple) -> Any:
    return data.learning_curves(_project)


@st.cache_data(show_spinner=False, max_entries=16)
def _pool(_project: Project, key: tuple[str, int], round_id: int, previous_id: int | None) -> Any:
    return data.pool_view(_project, round_id, previous_id)


@st.cache_data(show_spinner=False, max_entries=16)
def _details(_project: Project, key: tuple[str, int], round_id: int) -> Any:
    return data.round_details(_project, round_id)


@st.cache_data(show_spinner=False, max_entries=16)
def _training(_project: Project, key: tuple[str, int], round_id: int) -> Any:
    return data.training_curves(_project, round_id)


@st.cache_data(show_spinner=False, max_entries=16)
def _labels(_project: Project, key: tuple[str, int], version: tuple[int, int]) -> Any:
    return data.label_stats(_project)


@st.cache_data(show_spinner=False, max_entries=16)
def _errors(_project: Project, key: tuple[str, int], round_id: int, version: tuple) -> Any:
    return data.find_label_errors(_project, round_id)


def _simulation_stamp(project: Project) -> tuple:
    """Names and modification times of the simulation CSVs: a new file refreshes the curves."""
    folder = data.simulation_dir(project)
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.csv")))


# ------------------------------------------------------------------ sections


def verdict_text(advice: data.StoppingAdvice) -> str:
    """The verdict in bold, then the message without repeating it ("Keep labeling: ...")."""
    verdict = advice.verdict.capitalize()
    message = advice.message
    if message.lower().startswith(advice.verdict.lower()):
        message = message[len(advice.verdict) :].lstrip(" :.-").strip()
        message = message[:1].upper() + message[1:]
    return f"**{verdict}.** {message}"


def section_stopping(
    advice: data.StoppingAdvice, curves: pd.DataFrame, untrusted_n: int | None = None
) -> None:
    show, icon = VERDICT_STYLE.get(advice.verdict, (st.info, None))
    show(verdict_text(advice), icon=icon)
    cols = st.columns(4)
    gain = advice.gain_per_100
    acc = advice.latest_accuracy
    se = advice.latest_accuracy_se
    too_few = (
        None
        if untrusted_n is None
        else f"Not shown: {untrusted_n} evaluation sample{'s' if untrusted_n != 1 else ''} "
        "are too few to measure accuracy."
    )
    cols[0].metric(
        "Accuracy gain per 100 labels",
        "n/a" if gain is None or too_few else f"{gain * 100:+.2f} pp",
        help=too_few,
    )
    cols[1].metric(
        "Latest accuracy",
        "n/a" if acc is None or too_few else f"{acc:.1%}",
        help=too_few or (None if se is None else f"±{se:.1%} (one standard error)"),
    )
    share = advice.informative_share
    cols[2].metric(
        f"Pool with MI > {advice.thresholds.mutual_information} nats",
        "n/a" if share is None else f"{share:.1%}",
    )
    stab = advice.stability
    cols[3].metric("Predictions unchanged", "n/a" if stab is None else f"{stab:.1%}")
    with st.expander("Why this advice"):
        for reason in advice.reasons:
            st.markdown(f"- {reason}")
        ensemble = curves[curves["member"] == -1][["n_labels", "accuracy"]].dropna()
        if len(ensemble) >= 2:
            show_chart(
                charts.stopping_chart(
                    ensemble,
                    fit_n_labels=advice.fit_n_labels,
                    fit_accuracy=advice.fit_accuracy,
                ),
                key="chart_stopping",
            )


def section_learning(
    curves: data.LearningCurves,
    training: pd.DataFrame,
    round_id: int,
    untrusted_n: int | None = None,
) -> None:
    if curves.simulation is None:
        st.caption(
            "No simulation results for this project yet: run `activelearn simulate --project "
            "NAME --manifest POOL.csv --test TEST.csv` (or `--demo`) to draw the random-sampling "
            "curve beside these."
        )
    columns = chart_row(3, key="learning")
    for column, metric in zip(columns, data.METRICS, strict=True):
        with column:
            show_chart(
                charts.learning_curve_chart(
                    curves.curves, metric=metric, simulation=curves.simulation
                ),
                key=f"chart_learning_{metric}",
                untrusted_n=untrusted_n,
            )
    if len(learners_used(curves.curves)) > 1:
        show_chart(
            learner_comparison_chart(curves.curves, metric="accuracy"),
            key="chart_learners",
            untrusted_n=untrusted_n,
        )
    sources = sorted(set(curves.curves["eval_source"].dropna()))
    if len(sources) > 1:
        st.caption(
            "Note: the evaluation set changed between rounds (audit samples, then an imported "
            "test split); points measured on different sets are not strictly comparable."
        )
    if training.empty:
        st.caption(f"Round {round_id} stored no training curves.")
    else:
        show_chart(charts.training_curve_chart(training, round_id=round_id), key="chart_training")


def section_pool(view: data.PoolView, classes: tuple[str, ...], project: Project) -> None:
    shown = pd.concat([view.top_mutual_information, view.out_of_distribution])
    names = project.original_names([int(i) for i in shown["sample_id"]]) if len(shown) else {}
    st.caption(
        f"Round {view.round_id} scored {view.n_pool:,} unlabeled pool samples"
        + (f"; grey bars are round {view.previous_id}." if view.previous_id else ".")
    )
    columns = chart_row(len(view.histograms) or 1, key="histograms")
    for column, (score, hist) in zip(columns, view.histograms.items(), strict=False):
        with column:
            show_chart(
                charts.score_histogram_chart(
                    score=score,
                    edges=hist.edges,
                    latest=hist.latest,
                    previous=hist.previous,
                    latest_label=f"round {view.round_id}",
                    previous_label=f"round {view.previous_id}",
                ),
                key=f"chart_hist_{score}",
            )
    scatter_with_selection(view, classes, project)
    left, right = st.columns(2)
    with left:
        st.subheader("Most informative samples")
        st.caption("Highest mutual information: the members disagree most; the queue's top.")
        gallery(view.top_mutual_information, classes, score="mutual_information", names=names)
    with right:
        st.subheader("Possibly out of distribution")
        if view.ood_source == "ood_score":
            st.caption(
                f"Highest OOD score first. {OOD_SCORE_MEANING} Measured on the demo with 100 "
                "foreign images (letters, noise, blanks, textures) in the pool: AUROC 0.99 at "
                "300 labels (benchmarks/honesty.md). Reject one that is not a valid sample."
            )
            gallery(view.out_of_distribution, classes, score="ood_score", names=names)
        else:
            st.caption(
                "This round has no OOD score (it ran before the score existed): highest "
                "predictive entropy among the 10% of the pool with the most member "
                "disagreement, a proxy, not a detector."
            )
            gallery(view.out_of_distribution, classes, score="predictive_entropy", names=names)


@st.fragment
def scatter_with_selection(view: data.PoolView, classes: tuple[str, ...], project: Project) -> None:
    """A click on a point reruns only this fragment, not the page's other charts."""
    event = show_chart(
        charts.uncertainty_scatter_chart(view.points, classes=classes),
        key=SCATTER_KEY,
        on_select="rerun",
        selection_mode="points",
    )
    show_selected_sample(event, view, classes, project)


def section_calibration(details: data.RoundDetails, curves: pd.DataFrame) -> None:
    left, right = chart_row(2, key="calibration")
    reliability = details.reliability
    untrusted_n = eval_trust(details)
    with left:
        if details.n_eval == 0:
            st.caption("No reliability diagram: this round had no evaluation samples.")
        elif reliability.get("edges"):
            show_chart(
                charts.reliability_chart(
                    edges=reliability["edges"],
                    confidence=reliability.get("confidence", []),
                    accuracy=reliability.get("accuracy", []),
                    counts=reliability.get("counts", []),
                    ece=details.ece,
                ),
                key="chart_reliability",
                untrusted_n=untrusted_n,
            )
        else:
            st.caption("The latest round stored no reliability bins.")
    with right:
        show_chart(
            charts.ece_over_rounds_chart(data.ece_over_rounds(curves)),
            key="chart_ece",
            untrusted_n=untrusted_n,
        )


@st.fragment
def section_selective(details: data.RoundDetails, view: data.PoolView) -> None:
    """A fragment: moving the threshold reruns this section only, not the page's 15 charts."""
    threshold = st.slider(
        "Confidence threshold: abstain on samples below it",
        min_value=0.0,
        max_value=1.0,
        value=0.8,
        step=0.01,
        key=THRESHOLD_KEY,
    )
    abstained, expected = data.abstention_at(view, threshold)
    eval_accuracy, eval_coverage = data.eval_accuracy_above(details, threshold)
    cols = st.columns(3)
    cols[0].metric("Pool abstained on", f"{abstained:.1%}")
    cols[1].metric(
        "Expected accuracy on the rest",
        "n/a" if expected is None else f"{expected:.1%}",
        help="The mean confidence of the pool samples kept: accuracy if the model is calibrated.",
    )
    untrusted_n = eval_trust(details)
    cols[2].metric(
        "Evaluation accuracy above it",
        "n/a" if eval_accuracy is None or untrusted_n is not None else f"{eval_accuracy:.1%}",
        help=(
            f"Measured on the {eval_coverage:.0%} of evaluation samples at or above it."
            if untrusted_n is None
            else f"Not shown: {untrusted_n} evaluation samples are too few to measure it."
        ),
    )
    left, right = chart_row(2, key="selective")
    with left:
        coverage = details.risk_coverage
        if details.n_eval == 0:
            st.caption("No accuracy-coverage curve: this round had no evaluation samples.")
        elif coverage.get("coverage"):
            show_chart(
                charts.accuracy_coverage_chart(
                    coverage=coverage["coverage"],
                    risk=coverage["risk"],
                    aurc=coverage.get("aurc"),
                    marked_coverage=eval_coverage if details.eval_confidence else None,
                ),
                key="chart_coverage",
                untrusted_n=untrusted_n,
            )
        else:
            st.caption("The latest round stored no risk-coverage curve.")
    with right:
        show_chart(
            charts.abstention_chart(
                thresholds=view.thresholds,
                abstained_share=view.abstained_share,
                expected_accuracy=view.expected_accuracy,
                threshold=threshold,
            ),
            key="chart_abstention",
        )


def section_labels(stats: data.LabelStats, details: data.RoundDetails | None, classes) -> None:
    left, right = chart_row(2, key="labels")
    with left:
        if details is None:
            st.caption("No confusion matrix before the first finished round.")
        elif details.n_eval == 0 or not details.confusion:
            st.caption(f"No confusion matrix: round {details.round_id} had no evaluation samples.")
        else:
            show_chart(
                charts.confusion_matrix_chart(details.confusion, classes=classes),
                key="chart_confusion",
                untrusted_n=eval_trust(details),
            )
    with right:
        if stats.per_class.empty:
            st.caption("No labels yet.")
        else:
            show_chart(
                charts.labels_per_class_chart(stats.per_class, classes=classes),
                key="chart_per_class",
            )
    left, right = chart_row(2, key="people")
    with left:
        if not stats.per_hour.empty:
            show_chart(charts.labels_per_hour_chart(stats.per_hour), key="chart_per_hour")
    with right:
        if stats.n_multi:
            st.markdown(
                f"**{stats.n_multi:,}** samples carry labels from several annotators; all agree "
                f"on **{stats.n_unanimous:,}** ({stats.n_unanimous / stats.n_multi:.0%})."
            )
            show_chart(
                charts.agreement_chart(
                    stats.agreement, annotators=stats.annotators, shared=stats.shared
                ),
                key="chart_agreement",
            )
        else:
            st.caption("No sample has labels from more than one annotator yet.")


def section_label_errors(project: Project, errors: list[data.SuspectedLabelError]) -> None:
    st.caption(
        "Each label is judged by models that never trained on it (5 folds of the labeled set, "
        "over the pool's neighbour graph): listed when they give it under "
        f"{1 - data.LABEL_ISSUE_MIN_SCORE:.0%} and prefer another class. The score is 1 minus "
        "their probability of the label; on the demo with 5% of 300 labels flipped, the top 15 "
        "held 89% of the flipped ones (benchmarks/honesty.md). Sending one back withdraws its "
        "label (kept in the history) and returns it to the labeling queue."
    )
    show_message()
    if not errors:
        st.success("No suspected label errors in the latest round.")
        return
    st.markdown(f"**{len(errors):,}** suspected; the most suspicious first.")
    names = project.original_names([e.sample_id for e in errors[:MAX_LABEL_ERRORS_SHOWN]])
    for error in errors[:MAX_LABEL_ERRORS_SHOWN]:
        image, text, action = st.columns([1, 4, 2], vertical_alignment="center")
        with image:
            try:
                st.image(components.upscaled_png(error.path, 84), width=84)
            except OSError:
                st.caption("image missing")
        with text:
            by = f" by {components.md(error.annotator)}" if error.annotator else ""
            st.markdown(
                f"**#{error.sample_id}** "
                f"{components.md(shown_name(names, error.sample_id, error.path))}  \n"
                f"labeled **{components.md(error.label)}**{by}; judges suggest "
                f"**{components.md(error.suggested)}** (score {error.score:.2f}: "
                f"{error.label_probability:.0%} for the label)"
            )
        with action:
            st.button(
                "Send back for re-review",
                key=f"dashboard_review_{error.sample_id}",
                on_click=send_back,
                args=(project, error.sample_id),
            )


# (button label, bytes builder, file name suffix, MIME type, widget key)
_LABEL_EXPORTS = (
    ("Labels (CSV)", export.labels_csv_bytes, "labels.csv", "text/csv", "export_labels_csv"),
    (
        "Labels (JSONL)",
        export.labels_jsonl_bytes,
        "labels.jsonl",
        "application/jsonl",
        "export_labels_jsonl",
    ),
    (
        "Images by class (ZIP)",
        export.image_folder_zip_bytes,
        "imagefolder.zip",
        "application/zip",
        "export_imagefolder",
    ),
)
_PREDICTION_EXPORTS = (
    (
        "Pool predictions (CSV)",
        export.predictions_csv_bytes,
        "predictions.csv",
        "text/csv",
        "export_predictions_csv",
    ),
    (
        "Pool predictions (Parquet)",
        export.predictions_parquet_bytes,
        "predictions.parquet",
        "application/vnd.apache.parquet",
        "export_predictions_parquet",
    ),
)


def _download_buttons(columns: list, exports: tuple, project: Project, name: str) -> None:
    """One download button per export, left to right; the bytes are built on click."""
    for column, (label, build, suffix, mime, key) in zip(columns, exports, strict=False):
        column.download_button(
            label,
            data=lambda build=build: build(project),
            file_name=f"{name}-{suffix}",
            mime=mime,
            key=key,
        )


def section_export(project: Project, has_round: bool) -> None:
    st.caption(
        "Labels: every live label (CSV, JSONL) or the images copied into one folder per class "
        "(ImageFolder layout, ZIP). Predictions: every sample the latest round scored with all "
        "uncertainty scores and class probabilities. Checkpoint: the latest model's "
        "safetensors weights, config and class names (ZIP)."
    )
    name = project.name.replace("/", "_")
    _download_buttons(st.columns(3), _LABEL_EXPORTS, project, name)
    if not has_round:
        st.caption("Predictions and the checkpoint appear after the first finished round.")
        return
    row = st.columns(3)
    _download_buttons(row, _PREDICTION_EXPORTS, project, name)
    try:
        round_id, _folder = export.latest_checkpoint(project)
    except ActivelearnError:
        row[2].caption("No checkpoint on disk for the finished rounds.")
    else:
        row[2].download_button(
            f"Checkpoint of round {round_id} (ZIP)",
            data=lambda: export.checkpoint_zip_bytes(project),
            file_name=f"{name}-round{round_id}-checkpoint.zip",
            mime="application/zip",
            key="export_checkpoint",
        )


# ------------------------------------------------------------------ the page

workspace, project = components.page_start("Uncertainty dashboard")
if project is None:
    st.info("No project yet: create one on the Project setup page.")
    st.stop()
assert project is not None
st.html(CHART_ROW_CSS)

cache_key = (workspace.url, project.id)
summary = data.overview(project)
version = data.label_version(project)
latest, previous = summary.latest, summary.previous
classes = summary.classes
stats = _labels(project, cache_key, version)

if latest is None:
    st.info(
        "No training round has finished yet, so there is nothing to chart about the model. "
        "Label some samples and start a round on the Project setup page.",
        icon=":material/hourglass_empty:",
    )
    st.header("Labels and people")
    section_labels(stats, None, classes)
    st.header("Embedding map")
    section_embedding_map(project, None, list(classes))
    st.header("Rejected samples")
    section_rejected(project)
    st.header("Export")
    section_export(project, has_round=False)
    st.stop()
assert latest is not None

sims = _simulation_stamp(project)
previous_id = previous.id if previous is not None else None
curves = _learning(project, cache_key, latest.id, sims)
view = _pool(project, cache_key, latest.id, previous_id)
details = _details(project, cache_key, latest.id)
training = _training(project, cache_key, latest.id)
# Not cached: it is arithmetic on the cached curves and view plus one count, and the count
# (pool samples left) changes with imports as well as labels.
advice = data.stopping_advice(project, curves.curves, view)
label_errors = _errors(project, cache_key, latest.id, version)

rounds_done = len(summary.rounds)
eval_kind = "imported test" if details.eval_source == "test" else "held-out audit"
st.caption(
    f"Latest finished round: {latest.id}, trained on {latest.n_labels:,} "
    f"label{'s' if latest.n_labels != 1 else ''}; {rounds_done} finished "
    f"round{'s' if rounds_done != 1 else ''} in all. Evaluated on {details.n_eval:,} {eval_kind} "
    f"sample{'s' if details.n_eval != 1 else ''}."
)
eval_set_notice(details)
untrusted = eval_trust(details)
st.header("Stopping advice")
section_stopping(advice, curves.curves, untrusted)

(
    tab_learning,
    tab_pool,
    tab_map,
    tab_calibration,
    tab_selective,
    tab_labels,
    tab_errors,
    tab_rejected,
    tab_export,
) = st.tabs(
    [
        "Learning curves",
        "Pool uncertainty",
        "Embedding map",
        "Calibration",
        "Selective classification",
        "Labels and people",
        f"Suspected label errors ({len(label_errors)})",
        f"Rejected ({project.status().n_rejected})",
        "Export",
    ]
)
with tab_learning:
    section_learning(curves, training, latest.id, untrusted)
with tab_pool:
    section_pool(view, classes, project)
with tab_map:
    section_embedding_map(project, latest.id, list(classes))
with tab_calibration:
    section_calibration(details, curves.curves)
with tab_selective:
    section_selective(details, view)
with tab_labels:
    section_labels(stats, details, classes)
with tab_errors:
    section_label_errors(project, label_errors)
with tab_rejected:
    section_rejected(project)
with tab_export:
    section_export(project, has_round=True)
