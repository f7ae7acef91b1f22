"""Chart builders on small fixtures: traces, values, titles, captions and escaping."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from activelearn.ui import chart_base, charts

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _curves() -> pd.DataFrame:
    rows = []
    for n_labels, acc in ((10, 0.5), (20, 0.6), (40, 0.7)):
        rows.append((n_labels, -1, acc, 0.02, 1.0 - acc, 0.05, 0.1))
        for member in (0, 1):
            rows.append((n_labels, member, acc - 0.05 * (member + 1), 0.03, 1.1 - acc, 0.06, 0.12))
    return pd.DataFrame(
        rows, columns=["n_labels", "member", "accuracy", "accuracy_se", "nll", "nll_se", "ece"]
    )


def _names(figure) -> list[str]:
    return [trace.name for trace in figure.data]


def _text_of(figure) -> str:
    """Everything Plotly would render as text, as JSON."""
    return json.dumps(figure.to_plotly_json(), default=str)


def _all_charts() -> list[charts.Chart]:
    return [
        charts.learning_curve_chart(_curves(), metric="accuracy"),
        charts.training_curve_chart(
            pd.DataFrame(
                {"member": [0, 0], "epoch": [0, 1], "train_loss": [1, 0.5], "val_loss": [1, 0.7]}
            )
        ),
        charts.score_histogram_chart(score="variance", edges=[0, 1], latest=[3]),
        charts.uncertainty_scatter_chart(_points(), classes=["a", EVIL]),
        charts.reliability_chart(
            edges=[0, 0.5, 1], confidence=[0.3, 0.8], accuracy=[0.2, 0.9], counts=[1, 1], ece=0.1
        ),
        charts.ece_over_rounds_chart(
            pd.DataFrame({"round_id": [1], "n_labels": [5], "ece": [0.1]})
        ),
        charts.accuracy_coverage_chart(coverage=[0.5, 1.0], risk=[0.0, 0.5]),
        charts.abstention_chart(
            thresholds=[0, 1], abstained_share=[0, 1], expected_accuracy=[0.5, None]
        ),
        charts.confusion_matrix_chart([[1, 0], [0, 1]], classes=["a", "b"]),
        charts.labels_per_class_chart(
            pd.DataFrame({"label": ["a"], "split": ["pool"], "count": [1]}), classes=["a", "b"]
        ),
        charts.labels_per_hour_chart(
            pd.DataFrame({"hour": ["2026-01-01 10:00"], "annotator": ["ana"], "count": [3]})
        ),
        charts.agreement_chart(
            [[1.0, 0.5], [0.5, 1.0]], annotators=["a", "b"], shared=[[2, 2], [2, 2]]
        ),
        charts.stopping_chart(
            pd.DataFrame({"n_labels": [1, 2], "accuracy": [0.5, 0.6]}),
            fit_n_labels=[1, 2],
            fit_accuracy=[0.5, 0.6],
        ),
    ]


def _points() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": [7, 8],
            "path": ["/data/x/<img src=x onerror=alert(1)>.png", "/data/x/plain.png"],
            "expected_entropy": [0.1, 0.5],
            "mutual_information": [0.4, 0.05],
            "predicted_class": [1, 0],
            "confidence": [0.6, 0.9],
        }
    )


def test_every_chart_has_a_title_axis_titles_and_a_caption() -> None:
    for chart in _all_charts():
        layout = chart.figure.layout
        assert layout.title.text, chart
        assert layout.xaxis.title.text and layout.yaxis.title.text, layout.title.text
        assert chart.caption and "\n" not in chart.caption and chart.caption.endswith(".")


def test_learning_curve_traces_and_bands() -> None:
    simulation = pd.DataFrame(
        {"n_labels": [10, 20], "accuracy": [0.4, 0.45], "accuracy_se": [0.01, 0.01]}
    )
    chart = charts.learning_curve_chart(_curves(), metric="accuracy", simulation=simulation)
    names = _names(chart.figure)
    assert names == [
        "members",
        "member 1",
        "random sampling ±1 SE",
        "random sampling (simulation)",
        "ensemble ±1 SE",
        "ensemble",
    ]
    ensemble = chart.figure.data[-1]
    assert list(ensemble.x) == [10, 20, 40]
    assert list(ensemble.y) == pytest.approx([0.5, 0.6, 0.7])
    band = chart.figure.data[-2]
    # upper edge left to right, then the lower edge back
    assert list(band.x) == [10, 20, 40, 40, 20, 10]
    assert list(band.y) == pytest.approx([0.52, 0.62, 0.72, 0.68, 0.58, 0.48])
    assert band.fill == "toself"
    member_1 = chart.figure.data[1]
    assert list(member_1.y) == pytest.approx([0.4, 0.5, 0.6])
    assert chart.figure.layout.xaxis.title.text == "Labels"


def test_learning_curve_without_standard_errors_has_no_band() -> None:
    chart = charts.learning_curve_chart(_curves(), metric="ece")
    assert "ensemble ±1 SE" not in _names(chart.figure)
    with pytest.raises(ValueError, match="unknown metric"):
        charts.learning_curve_chart(_curves(), metric="f1")


def test_training_curve_one_train_and_one_val_line_per_member() -> None:
    epochs = pd.DataFrame(
        {
            "member": [0, 0, 1, 1],
            "epoch": [1, 0, 0, 1],
            "train_loss": [0.5, 1.0, 1.1, 0.6],
            "val_loss": [0.7, 1.2, None, None],
        }
    )
    chart = charts.training_curve_chart(epochs, round_id=3)
    assert _names(chart.figure) == ["member 0 train", "member 0 validation", "member 1 train"]
    assert list(chart.figure.data[0].y) == [1.0, 0.5]  # sorted by epoch
    assert "round 3" in chart.figure.layout.title.text


def test_score_histogram_shares_and_centres() -> None:
    chart = charts.score_histogram_chart(
        score="mutual_information",
        edges=[0.0, 0.5, 1.0],
        latest=[3, 1],
        previous=[1, 1],
        latest_label="round 2",
        previous_label="round 1",
    )
    previous, latest = chart.figure.data
    assert latest.name == "round 2" and previous.name == "round 1"
    assert list(latest.x) == [0.25, 0.75]
    assert list(latest.y) == [0.75, 0.25]
    assert list(previous.y) == [0.5, 0.5]
    assert list(latest.customdata) == [3, 1]
    assert chart.figure.layout.barmode == "overlay"
    with pytest.raises(ValueError):
        charts.score_histogram_chart(score="variance", edges=[0, 1], latest=[1, 2])


def test_scatter_points_carry_sample_ids_and_escaped_text() -> None:
    chart = charts.uncertainty_scatter_chart(_points(), classes=["a", EVIL])
    (trace,) = chart.figure.data
    assert list(trace.x) == [0.1, 0.5] and list(trace.y) == [0.4, 0.05]
    assert [row[0] for row in trace.customdata] == [7, 8]
    assert trace.customdata[0][1] == "&lt;img src=x onerror=alert(1)&gt;.png"
    assert trace.customdata[0][2] == EVIL_ESCAPED
    assert "<script>" not in _text_of(chart.figure)
    assert "<img" not in _text_of(chart.figure)


def test_empty_scatter_still_has_its_layout() -> None:
    chart = charts.uncertainty_scatter_chart(_points().iloc[0:0], classes=["a"])
    assert chart.figure.data == ()
    assert chart.figure.layout.title.text


def test_reliability_skips_empty_bins_and_draws_the_diagonal() -> None:
    chart = charts.reliability_chart(
        edges=[0.0, 0.5, 1.0],
        confidence=[None, 0.8],
        accuracy=[None, 0.7],
        counts=[0, 10],
        ece=0.1,
    )
    bars, diagonal = chart.figure.data
    assert list(bars.x) == [0.75] and list(bars.y) == [0.7]
    assert list(diagonal.x) == [0, 1] and list(diagonal.y) == [0, 1]
    assert "ECE 0.100" in chart.figure.layout.title.text


def test_ece_over_rounds_sorted_by_labels() -> None:
    frame = pd.DataFrame({"round_id": [2, 1, 3], "n_labels": [20, 10, 30], "ece": [0.2, 0.3, None]})
    (trace,) = charts.ece_over_rounds_chart(frame).figure.data
    assert list(trace.x) == [10, 20] and list(trace.y) == [0.3, 0.2]
    assert list(trace.customdata) == [1, 2]


def test_accuracy_coverage_is_one_minus_risk() -> None:
    chart = charts.accuracy_coverage_chart(
        coverage=[0.25, 0.5, 1.0], risk=[0.0, 0.1, 0.3], aurc=0.12, marked_coverage=0.5
    )
    (trace,) = chart.figure.data
    assert list(trace.y) == pytest.approx([1.0, 0.9, 0.7])
    assert "AURC 0.120" in chart.figure.layout.title.text
    assert chart.figure.layout.shapes[0].x0 == 0.5


def test_abstention_chart_marks_the_threshold() -> None:
    chart = charts.abstention_chart(
        thresholds=[0.0, 0.5, 1.0],
        abstained_share=[0.0, 0.4, 1.0],
        expected_accuracy=[0.7, 0.9, None],
        threshold=0.5,
    )
    share, expected = chart.figure.data
    assert list(share.y) == [0.0, 0.4, 1.0]
    assert list(expected.y) == [0.7, 0.9, None]
    assert chart.figure.layout.shapes[0].x0 == 0.5


def test_confusion_matrix_values_and_escaped_classes() -> None:
    chart = charts.confusion_matrix_chart([[5, 1], [2, 7]], classes=["cat", EVIL])
    (heatmap,) = chart.figure.data
    assert [list(row) for row in heatmap.z] == [[5, 1], [2, 7]]
    assert list(heatmap.x) == ["cat", EVIL_ESCAPED] == list(heatmap.y)
    assert "<script>" not in _text_of(chart.figure)


def test_labels_per_class_stacks_splits_in_class_order() -> None:
    counts = pd.DataFrame(
        {
            "label": ["b", "a", EVIL, "a"],
            "split": ["pool", "pool", "pool", "eval"],
            "count": [2, 3, 1, 4],
        }
    )
    chart = charts.labels_per_class_chart(counts, classes=["a", "b", EVIL])
    held_out, pool = chart.figure.data  # splits sorted: eval, pool
    assert list(pool.x) == ["a", "b", EVIL_ESCAPED]
    assert list(pool.y) == [3, 2, 1]
    assert list(held_out.y) == [4, 0, 0]
    assert chart.figure.layout.barmode == "stack"
    assert "<script>" not in _text_of(chart.figure)


def test_labels_per_hour_one_trace_per_annotator_escaped() -> None:
    rows = pd.DataFrame(
        {
            "hour": ["2026-01-01 10:00", "2026-01-01 11:00", "2026-01-01 10:00"],
            "annotator": ["ana", "ana", EVIL],
            "count": [3, 4, 1],
        }
    )
    chart = charts.labels_per_hour_chart(rows)
    assert _names(chart.figure) == [EVIL_ESCAPED, "ana"]
    assert list(chart.figure.data[1].y) == [3, 4]
    assert "<script>" not in _text_of(chart.figure)


def test_agreement_heatmap() -> None:
    chart = charts.agreement_chart(
        [[1.0, 0.25], [0.25, 1.0]], annotators=["ana", EVIL], shared=[[4, 4], [4, 4]]
    )
    (heatmap,) = chart.figure.data
    assert heatmap.z[0][1] == 0.25 and heatmap.zmin == 0 and heatmap.zmax == 1
    assert list(heatmap.x) == ["ana", EVIL_ESCAPED]


def test_stopping_chart_draws_the_fit_only_when_there_is_one() -> None:
    curve = pd.DataFrame({"n_labels": [1, 2, 3], "accuracy": [0.5, 0.6, 0.65]})
    assert (
        len(charts.stopping_chart(curve, fit_n_labels=[1, 3], fit_accuracy=[0.5, 0.7]).figure.data)
        == 2
    )
    assert len(charts.stopping_chart(curve, fit_n_labels=(), fit_accuracy=()).figure.data) == 1


def test_charts_module_does_not_import_streamlit() -> None:
    code = "import activelearn.ui.charts, sys; print('streamlit' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_escape_leaves_only_entities_plotly_decodes() -> None:
    # Plotly decodes &amp; &lt; &gt; and numeric entities, but draws &quot; literally.
    escaped = charts.escape("""<a href="x">'&'</a>""")
    assert escaped == "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    assert "<" not in escaped and '"' not in escaped and "&quot;" not in escaped


# ------------------------------------------------------------------ issue 16: titles never cut


def test_every_title_line_fits_the_narrowest_chart() -> None:
    for chart in _all_charts():
        for line in chart.figure.layout.title.text.split("<br>"):
            assert len(line) <= chart_base.TITLE_LINE_CHARS, line
    assert chart_base.wrap_title("Reliability diagram, latest round (ECE 0.031)") == (
        "Reliability diagram, latest<br>round (ECE 0.031)"
    )


def test_label_counts_are_ticked_in_whole_numbers() -> None:
    curves = pd.DataFrame(
        {"n_labels": [24, 25], "member": [-1, -1], "accuracy": [0.0, 1.0], "accuracy_se": [0, 0]}
    )
    chart = charts.learning_curve_chart(curves, metric="accuracy")
    assert list(chart.figure.layout.xaxis.tickvals) == [24, 25]
    assert charts.integer_ticks(list(range(0, 200, 10))) == {"tickformat": ",d"}
    per_class = charts.labels_per_class_chart(
        pd.DataFrame({"label": ["a"], "split": ["pool"], "count": [2]}), classes=["a", "b"]
    )
    assert per_class.figure.layout.yaxis.dtick == 1
    assert per_class.figure.layout.yaxis.tickformat == ",d"


def test_accuracy_axis_stays_within_zero_and_one() -> None:
    # One evaluation sample, answered wrong: accuracy 0, standard error 0.5.
    curves = pd.DataFrame(
        {"n_labels": [25], "member": [-1], "accuracy": [0.0], "accuracy_se": [0.5]}
    )
    figure = charts.learning_curve_chart(curves, metric="accuracy").figure
    assert tuple(figure.layout.yaxis.range) == (0, 1.02)
    band = next(trace for trace in figure.data if trace.fill == "toself")
    assert min(band.y) >= 0.0 and max(band.y) <= 1.0


def test_captions_name_only_what_is_drawn() -> None:
    bare = pd.DataFrame({"n_labels": [10], "member": [-1], "accuracy": [0.5]})
    caption = charts.learning_curve_chart(bare, metric="accuracy").caption
    assert "shading" not in caption and "dotted" not in caption and "random" not in caption
    full = charts.learning_curve_chart(
        _curves(),
        metric="accuracy",
        simulation=pd.DataFrame({"n_labels": [10], "accuracy": [0.4], "accuracy_se": [0.01]}),
    ).caption
    assert "shading" in full and "dotted" in full and "dashed orange random" in full
    first = charts.score_histogram_chart(
        score="mutual_information", edges=[0, 1, 2], latest=[3, 4], previous=None
    )
    assert "grey" not in first.caption
    epochs = pd.DataFrame({"member": [0], "epoch": [0], "train_loss": [1.0], "val_loss": [None]})
    assert "dashed" not in charts.training_curve_chart(epochs).caption
    abstention = charts.abstention_chart(
        thresholds=[0, 1], abstained_share=[0, 1], expected_accuracy=[0.5, 1], threshold=0.5
    )
    assert [trace.line.color for trace in abstention.figure.data] == [
        charts.ENSEMBLE_COLOR,
        charts.RANDOM_COLOR,
    ]
    assert "(blue)" in abstention.caption and "(orange)" in abstention.caption
