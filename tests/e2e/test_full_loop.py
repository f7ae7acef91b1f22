"""The whole loop in a real Chromium: label by keyboard, an automatic round, a new ranking, the
dashboard."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from activelearn import Workspace
from db.engine import read_session
from db.models import Sample, SampleScore
from tests.e2e.conftest import (
    AppServer,
    open_label_page,
    press_and_wait,
    screenshot,
    serve_app,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RETRAIN_EVERY = 20  # the automatic trigger fires on the 20th label
ROUND_TIMEOUT_MS = 75_000  # worker start (torch import) + 100 optimizer steps + scoring 4,000
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
PLOTLY = '[data-testid="stPlotlyChart"]'
MIN_DASHBOARD_CHARTS = 12  # 15 when written; the count depends a little on the data


def _tiny_demo(workspace: Workspace) -> None:
    # The CNN learner with BALD (the ranking this test follows: cold start by random_key, then
    # mutual information; the default embedding learner has its own tests). A tiny ensemble so
    # that a round takes seconds; the demo's gold test split evaluates it.
    workspace.ensure_demo().update_settings(
        learner="cnn",
        strategy="bald",
        members=2,
        epochs=1,
        retrain_every=RETRAIN_EVERY,
        audit_share=0.0,
        ssl_epochs=1,
    )


@pytest.fixture(scope="module")
def loop_server(
    chromium_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    with serve_app(tmp_path_factory.mktemp("e2e-loop"), _tiny_demo) as server:
        yield server


CAPTION = ".st-key-label_image [data-testid='stCaptionContainer']"
NEW_CAPTION_JS = """old => {
  const caption = document.querySelector(".st-key-label_image [data-testid='stCaptionContainer']");
  return caption !== null && caption.innerText !== old;
}"""


def shown_sample(page: Any) -> int:
    """The id of the sample on the label page (from its caption "Sample N · task M")."""
    caption = page.locator(CAPTION).inner_text()
    found = re.search(r"Sample (\d+) · task \d+", caption)
    assert found is not None, caption
    return int(found.group(1))


def label_and_read(page: Any, key: str) -> int:
    """Press `key`, wait for the next image and its caption; returns the new sample's id.

    The image and the caption arrive as separate elements: both must have changed.
    """
    old = page.locator(CAPTION).inner_text()
    press_and_wait(page, key)
    page.wait_for_function(NEW_CAPTION_JS, arg=old, polling="raf")
    return shown_sample(page)


def cold_start_order(workspace: Workspace, count: int) -> list[int]:
    """The first `count` pool samples in the cold-start order (ascending random_key)."""
    project = workspace.project("demo")
    with read_session(workspace.engine) as session:
        ids = session.scalars(
            select(Sample.id)
            .where(Sample.project_id == project.id, Sample.split == "pool")
            .order_by(Sample.random_key)
            .limit(count)
        ).all()
    return [int(sample_id) for sample_id in ids]


def top_open_scored(workspace: Workspace, round_id: int) -> tuple[int, int, float, float]:
    """The round's best-ranked sample still open in the pool: (rank, sample id, mutual
    information), and the largest mutual information among all open pool samples."""
    with read_session(workspace.engine) as session:
        rows = session.execute(
            select(SampleScore.rank, SampleScore.sample_id, SampleScore.mutual_information)
            .join(Sample, Sample.id == SampleScore.sample_id)
            .where(
                SampleScore.round_id == round_id,
                Sample.split == "pool",
                Sample.status == "open",
                SampleScore.rank.is_not(None),
            )
            .order_by(SampleScore.rank)
        ).all()
    assert rows, f"round {round_id} scored no open pool sample"
    rank, sample_id, mutual_information = rows[0]
    return int(rank), int(sample_id), float(mutual_information), max(float(r[2]) for r in rows)


def test_label_retrain_rerank_dashboard(loop_server: AppServer, browser: Any) -> None:
    started = time.monotonic()
    page = open_label_page(browser, loop_server.url, "lee")
    status = page.locator(".st-key-status_panel")
    page.get_by_text("Cold start: random order").wait_for()
    status.get_by_text("no ranking yet").wait_for()
    screenshot(page, "e2e-loop-1-label-before")

    # Label with the keyboard until the automatic trigger fires.
    rng = random.Random(11)
    served = [shown_sample(page)]
    for _ in range(RETRAIN_EVERY):
        served.append(label_and_read(page, rng.choice("0123456789")))
    with Workspace(loop_server.db_url, data_dir=loop_server.data_dir) as workspace:
        # Before any round the queue served the cold-start order exactly.
        assert served == cold_start_order(workspace, len(served))
        queued = workspace.project("demo").rounds()
    assert len(queued) == 1 and queued[0].n_labels in (0, RETRAIN_EVERY), queued

    # The app must have started a worker on its own: the round moves past "queued" and its
    # progress shows in the polled status panel (or, should a round ever train between two
    # polls, the panel goes straight to the new ranking).
    progress = page.get_by_text(re.compile(r"Round 1: (loading|training|evaluating|scoring)"))
    done = status.get_by_text("ranking is 0 labels old")
    progress.or_(done).first.wait_for(timeout=ROUND_TIMEOUT_MS)
    screenshot(page, "e2e-loop-2-training")
    done.wait_for(timeout=ROUND_TIMEOUT_MS)
    with Workspace(loop_server.db_url, data_dir=loop_server.data_dir) as workspace:
        [finished] = workspace.project("demo").rounds()
    assert finished.status == "succeeded", finished
    assert finished.n_labels == RETRAIN_EVERY
    screenshot(page, "e2e-loop-3-round-done")

    # The next sample comes from the new ranking: the top-ranked open sample by mutual
    # information, with its scores and the members' votes on screen.
    ranked = label_and_read(page, "7")
    page.get_by_text(
        re.compile(r"Ranked #[\d,]+ by mutual information \(BALD\) in round 1")
    ).wait_for()
    page.locator('[data-testid="stMetricLabel"]', has_text="Mutual information").wait_for()
    page.get_by_text("Members' top class").wait_for()
    with Workspace(loop_server.db_url, data_dir=loop_server.data_dir) as workspace:
        top_rank, top_sample, top_mi, max_mi = top_open_scored(workspace, finished.id)
        cold = cold_start_order(workspace, len(served) + 1)
    assert ranked == top_sample
    assert top_mi == pytest.approx(max_mi)
    assert ranked != cold[-1], "the queue still serves the cold-start order after the round"
    rank_text = page.get_by_text(re.compile(r"Ranked #")).inner_text()
    assert f"#{top_rank:,}" in rank_text
    shown_mi = page.locator('[data-testid="stMetric"]', has_text="Mutual information")
    assert f"{top_mi:.3f}" in shown_mi.inner_text()
    assert page.locator(ERRORS).count() == 0
    screenshot(page, "e2e-loop-4-label-ranked")

    # The dashboard: no exception or error on the page, and its charts drawn.
    page.locator('[data-testid="stSidebarNav"] a[href$="/dashboard"]').click()
    page.get_by_text("Latest finished round: 1").wait_for()
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    page.wait_for_function(
        f"n => document.querySelectorAll('{PLOTLY} .main-svg').length >= n",
        arg=MIN_DASHBOARD_CHARTS,
    )
    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()
    charts = page.locator(PLOTLY).count()
    assert charts >= MIN_DASHBOARD_CHARTS, charts
    # Streamlit scrolls inside its own container: a tall window shows the whole page.
    page.set_viewport_size({"width": 1400, "height": 2400})
    page.wait_for_timeout(500)
    screenshot(page, "e2e-loop-5-dashboard")
    page.context.close()
    assert time.monotonic() - started < 120
