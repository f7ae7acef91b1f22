"""The dashboard page rendered through Streamlit's AppTest on a project with two finished rounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from activelearn import Workspace
from activelearn.services import dashboard as data
from db.engine import read_session
from db.models import Sample
from tests.services.test_dashboard import DashboardFixture, build_dashboard_project

PAGE = str(Path(__file__).parents[2] / "activelearn" / "ui" / "app_pages" / "dashboard.py")
EXPECTED_TITLES = {
    "Accuracy",
    "Negative log-likelihood (nats)",
    "Expected calibration error",
    "Where the pool's uncertainty comes from",
    "Calibration error over rounds",
    "Confusion matrix on the evaluation set",
    "Labels per class",
    "Labels per hour",
    "Agreement between annotators",
}


@pytest.fixture
def page_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    url = f"sqlite:///{tmp_path / 'page.db'}"
    data_dir = tmp_path / "data"
    monkeypatch.setenv("ACTIVELEARN_DB_URL", url)
    monkeypatch.setenv("ACTIVELEARN_DATA_DIR", str(data_dir))
    st.cache_resource.clear()
    st.cache_data.clear()
    return url, data_dir


@pytest.fixture
def built(page_env: tuple[str, Path], tmp_path: Path) -> DashboardFixture:
    url, data_dir = page_env
    ws = Workspace(url, data_dir=data_dir)
    try:
        return build_dashboard_project(ws, tmp_path)
    finally:
        ws.close()


def _run(project_name: str = "digits") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["project_name"] = project_name
    return at.run()


def _titles(at: AppTest) -> list[str]:
    titles = []
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        # Long titles are wrapped with <br> (see chart_base.wrap_title); compare the words.
        titles.append(spec["layout"]["title"]["text"].replace("<br>", " "))
    return titles


def test_dashboard_renders_every_section(built: DashboardFixture) -> None:
    at = _run()
    assert not at.exception, at.exception
    titles = _titles(at)
    for expected in EXPECTED_TITLES:
        assert expected in titles, (expected, titles)
    assert any(t.startswith("Training loss per epoch") for t in titles)
    assert any(t.startswith("Reliability diagram") for t in titles)
    assert any(t.startswith("Accuracy against coverage") for t in titles)
    assert any(t.startswith("Abstaining below") for t in titles)
    assert sum(t.endswith("over the pool") for t in titles) == 3
    # every chart is followed by its one-line caption
    assert len(at.caption) >= len(titles)
    # no raw class name reaches a figure
    for element in at.get("plotly_chart"):
        assert "<script>" not in element.proto.spec
    # the stopping advice is in plain words
    advice = " ".join(str(e.value) for e in at.success)
    assert "Keep labeling" in advice
    assert at.slider(key="dashboard_threshold").value == pytest.approx(0.8)
    labels = [tab.label for tab in at.tabs]
    assert "Suspected label errors (1)" in labels
    # labels x3, predictions x2, checkpoint
    assert len(at.get("download_button")) == 6
    # galleries: the top by mutual information and the possible out-of-distribution samples
    assert len(at.get("image")) >= 2


def test_threshold_slider_updates_the_abstention_figures(built: DashboardFixture) -> None:
    view = data.pool_view(built.project, built.round_ids[1], built.round_ids[0])
    at = _run()
    shown = {m.label: m.value for m in at.metric}
    assert shown["Pool abstained on"] == f"{data.abstention_at(view, 0.8)[0]:.1%}"
    at.slider(key="dashboard_threshold").set_value(0.0).run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["Pool abstained on"] == "0.0%"
    assert shown["Expected accuracy on the rest"] == f"{data.abstention_at(view, 0.0)[1]:.1%}"


def test_send_back_button_returns_the_sample_to_the_queue(built: DashboardFixture) -> None:
    at = _run()
    at.button(key=f"dashboard_review_{built.planted_error}").click().run()
    assert not at.exception, at.exception
    assert any("back in the labeling queue" in str(s.value) for s in at.success)
    with read_session(built.project.engine) as session:
        sample = session.get(Sample, built.planted_error)
        assert sample is not None and sample.status == "open"
    labels = [tab.label for tab in at.tabs]
    assert "Suspected label errors (0)" in labels


def test_dashboard_before_any_round(page_env: tuple[str, Path]) -> None:
    url, data_dir = page_env
    with Workspace(url, data_dir=data_dir) as ws:
        ws.create_project("fresh", ["a", "b"])
    at = _run("fresh")
    assert not at.exception, at.exception
    assert any("No training round has finished yet" in str(i.value) for i in at.info)
    assert at.get("plotly_chart") == [] or all("Confusion" not in t for t in _titles(at))


def test_rejected_tab_lists_and_restores(built: DashboardFixture) -> None:
    project = built.project
    task = project.next_task("carl")
    assert task is not None
    project.reject(task.id, annotator="carl", reason="not a cat or a dog")
    at = _run()
    assert not at.exception, at.exception
    assert "Rejected (1)" in [tab.label for tab in at.tabs]
    assert any("not a cat or a dog" in str(m.value) for m in at.markdown)
    at.button(key=f"restore_rejected_{task.sample_id}").click().run()
    assert not at.exception, at.exception
    assert any("back in the pool" in str(s.value) for s in at.success)
    assert "Rejected (0)" in [tab.label for tab in at.tabs]
    assert project.rejected().empty


def test_embedding_map_before_the_first_round(page_env: tuple[str, Path], tmp_path: Path) -> None:
    from tests.services.test_representation import run_queued
    from tests.services.test_rounds import make_project

    url, data_dir = page_env
    with Workspace(url, data_dir=data_dir) as ws:
        make_project(ws, tmp_path / "images", settings={"ssl_epochs": 1})
        assert run_queued(ws) == "succeeded"
    at = _run("tiny")
    assert not at.exception, at.exception
    assert "The pool in the representation's space" in _titles(at)
    captions = " ".join(str(c.value) for c in at.caption)
    assert "1-nearest-neighbour agreement of the 12 labeled pool samples" in captions
    at.radio(key="embedding_map_color").set_value("Mutual information").run()
    assert not at.exception, at.exception


# ------------------------------------------------------------------ issue 16: small evaluation sets


def _set_eval_size(built: DashboardFixture, n_eval: int) -> None:
    from sqlalchemy import update

    from db.engine import write_session
    from db.models import RoundMetric

    with write_session(built.project.engine) as session:
        session.execute(
            update(RoundMetric)
            .where(RoundMetric.round_id == built.round_ids[1])
            .values(n_eval=n_eval)
        )


def test_a_one_sample_evaluation_set_is_called_untrustworthy(built: DashboardFixture) -> None:
    _set_eval_size(built, 1)
    at = _run()
    assert not at.exception, at.exception
    assert any("Evaluated on 1 imported test sample." in c.value for c in at.caption)
    warnings = " ".join(w.value for w in at.warning)
    assert "only 1 sample: too small to trust" in warnings
    shown = {m.label: m.value for m in at.metric}
    assert shown["Latest accuracy"] == "n/a"
    assert shown["Evaluation accuracy above it"] == "n/a"
    greyed = [c.value for c in at.caption if c.value.startswith("Greyed: measured on 1 ")]
    assert len(greyed) >= 5  # three learning curves, reliability, ECE, coverage, confusion
    advice = " ".join(str(e.value) for e in at.success)
    assert "Keep labeling. Keep labeling" not in advice and "**Keep labeling.**" in advice


def test_a_round_without_evaluation_samples_shows_no_eval_figures(
    built: DashboardFixture,
) -> None:
    _set_eval_size(built, 0)
    at = _run()
    assert not at.exception, at.exception
    assert any("had no evaluation samples" in w.value for w in at.warning)
    captions = " ".join(c.value for c in at.caption)
    assert f"No confusion matrix: round {built.round_ids[1]} had no evaluation" in captions
    assert "No confusion matrix before the first finished round" not in captions
    titles = _titles(at)
    assert not any(t.startswith(("Reliability", "Confusion", "Accuracy against")) for t in titles)


def test_a_large_evaluation_set_is_shown_plainly(built: DashboardFixture) -> None:
    _set_eval_size(built, 200)
    at = _run()
    assert not at.exception, at.exception
    assert not any("too small to trust" in w.value for w in at.warning)
    assert not any(c.value.startswith("Greyed") for c in at.caption)
    assert {m.label: m.value for m in at.metric}["Latest accuracy"] == "75.0%"
