"""The label page in a real Chromium: keyboard labeling, undo, and two annotators at once."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from activelearn import Workspace
from tests.e2e.conftest import (
    IMAGE,
    NEXT_IMAGE_JS,
    AppServer,
    open_label_page,
    press_and_wait,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_keyboard_labeling_and_undo(app_server: AppServer, browser: Any) -> None:
    page = open_label_page(browser, app_server.url, "kim")
    rng = random.Random(7)
    keys = [rng.choice("0123456789") for _ in range(25)]
    seen = [page.locator(IMAGE).get_attribute("src")]
    for key in keys:
        seen.append(press_and_wait(page, key))
    # 26 images: each label brought a new sample.
    assert len(set(seen)) == 26
    screenshot(page, "e2e-label-after-25")
    # Undo: the 25th sample comes back on screen.
    assert press_and_wait(page, "u") == seen[24]
    page.get_by_text("Label withdrawn").wait_for()
    screenshot(page, "e2e-label-after-undo")
    page.context.close()

    with Workspace(app_server.db_url, data_dir=app_server.data_dir) as workspace:
        labels = workspace.project("demo").labels()
    mine = labels[labels["annotator"] == "kim"]
    assert len(mine) == 24
    assert mine["sample_id"].is_unique
    # The demo's classes are the digits, and each digit key gives its own digit.
    assert Counter(mine["label"]) == Counter(keys[:24])


def test_two_annotators_at_once(app_server: AppServer, browser: Any) -> None:
    ana = open_label_page(browser, app_server.url, "ana")
    bo = open_label_page(browser, app_server.url, "bo")
    pages = {"ana": ana, "bo": bo}
    for step in range(12):
        shown = {name: page.locator(IMAGE).get_attribute("src") for name, page in pages.items()}
        # Never the same sample on both screens at the same time.
        assert shown["ana"] != shown["bo"], f"step {step}: both annotators see the same sample"
        # Both key presses go out before either page is awaited: the two sessions rerun at once.
        for name, page in pages.items():
            page.keyboard.press(str((step + len(name)) % 10))
        for name, page in pages.items():
            page.wait_for_function(NEXT_IMAGE_JS, arg=shown[name], polling="raf")
    screenshot(ana, "e2e-two-annotators-ana")
    screenshot(bo, "e2e-two-annotators-bo")
    for page in pages.values():
        page.context.close()

    with Workspace(app_server.db_url, data_dir=app_server.data_dir) as workspace:
        labels = workspace.project("demo").labels()
    both = labels[labels["annotator"].isin(["ana", "bo"])]
    assert Counter(both["annotator"]) == {"ana": 12, "bo": 12}
    # No sample was labeled by both: the queue never served one sample to two people.
    assert both["sample_id"].is_unique


def test_x_rejects_and_typing_a_reason_labels_nothing(app_server: AppServer, browser: Any) -> None:
    page = open_label_page(browser, app_server.url, "rex")
    first = page.locator(IMAGE).get_attribute("src")
    second = press_and_wait(page, "x")  # no reason: X alone rejects
    assert second != first
    page.get_by_text("Marked as not a valid sample").wait_for()
    # A reason typed into its field: digits, s, u and x are text there, not shortcuts.
    page.get_by_text("Why not valid?").click()
    field = page.get_by_label("Reason")
    field.fill("")
    field.press_sequentially("x1 su 0")
    field.press("Enter")
    page.wait_for_timeout(500)
    # Still the same sample (a rerun may briefly show the image twice: both are this one).
    shown = page.eval_on_selector_all(IMAGE, "imgs => imgs.map(img => img.src)")
    assert set(shown) == {second}
    page.get_by_role("button", name="Not a valid sample").click()
    page.wait_for_function(NEXT_IMAGE_JS, arg=second, polling="raf")
    screenshot(page, "e2e-label-after-reject")
    page.context.close()

    with Workspace(app_server.db_url, data_dir=app_server.data_dir) as workspace:
        project = workspace.project("demo")
        rejected = project.rejected()
        labels = project.labels()
    mine = rejected[rejected["annotator"] == "rex"]
    assert list(mine["reason"].fillna("")) == ["x1 su 0", ""]  # newest first
    assert labels[labels["annotator"] == "rex"].empty
