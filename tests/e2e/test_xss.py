"""Script payloads in class, file, project and annotator names, in a real Chromium: every page
shows them as literal text and no script ever runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activelearn import Workspace
from tests.conftest import png_bytes
from tests.e2e.conftest import (
    IMAGE,
    AppServer,
    press_and_wait,
    screenshot,
    serve_app,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLASS_IMG = "<img src=x onerror=alert(1)>"
CLASS_SCRIPT = "<script>alert(2)</script>"
CLASS_PLAIN = "plain & 'quoted' \"class\""
CLASSES = [CLASS_IMG, CLASS_SCRIPT, CLASS_PLAIN]
FILE_IMAGE = "<img src=x onerror=alert(3)>.png"  # a real image: imported
FILE_JUNK = "<svg onload=alert(4)>.png"  # not an image: rejected, its name in the report
PROJECT = "<img src=x onerror=alert(5)> project"
ANNOTATOR = "<img src=x onerror=alert(6)>"
N_IMAGES = 12
N_LABELED = 9
ROUND_TIMEOUT_MS = 75_000
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
# Elements the payloads would create if any of them were parsed as HTML.
INJECTED_JS = """() => document.querySelectorAll(
  'img[src="x"], svg[onload], img[onerror], [data-testid="stMain"] script'
).length"""

# What the page shows: the visible text, and the text Plotly draws in its SVG charts.
SHOWN_TEXT_JS = """() => document.body.innerText + ' ' + Array.from(
  document.querySelectorAll('[data-testid="stPlotlyChart"] svg')
).map(svg => svg.textContent).join(' ')"""


def _payload_project(workspace: Workspace) -> None:
    workspace.create_project(
        PROJECT,
        CLASSES,
        settings={"retrain_every": 0, "audit_share": 0.0, "members": 2, "epochs": 1},
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat folder of small images, one named with a payload, and a payload-named non-image."""
    folder = tmp_path_factory.mktemp("xss-images")
    (folder / FILE_IMAGE).write_bytes(png_bytes(900))
    for index in range(N_IMAGES - 1):
        (folder / f"img{index:02d}.png").write_bytes(png_bytes(901 + index))
    (folder / FILE_JUNK).write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    return folder


@pytest.fixture(scope="module")
def xss_server(
    chromium_path: Path, tmp_path_factory: pytest.TempPathFactory, images: Path
) -> Iterator[AppServer]:
    # The setup page imports the payload folder by its server path: it is the import root.
    folder = tmp_path_factory.mktemp("e2e-xss")
    with serve_app(folder, _payload_project, import_roots=images) as server:
        yield server


def assert_inert(page: Any, dialogs: list[str], where: str, *, expected_error: str = "") -> None:
    """No dialog fired, no payload element exists, and no exception or error is shown (but
    `expected_error`, when given)."""
    assert dialogs == [], f"{where}: a script ran and opened {dialogs}"
    assert page.evaluate(INJECTED_JS) == 0, f"{where}: a payload was parsed as HTML"
    # Escaped twice would be safe but unreadable: entities must never reach the screen.
    shown = page.evaluate(SHOWN_TEXT_JS)
    for entity in ("&lt;", "&gt;", "&quot;", "&#"):
        assert entity not in shown, f"{where}: {entity!r} is shown on the page"
    errors = [text for text in page.locator(ERRORS).all_inner_texts() if text != expected_error]
    assert errors == [], f"{where}: {errors}"


def visible_text(page: Any, text: str) -> Any:
    """The first visible element whose text contains `text` literally."""
    return page.get_by_text(text, exact=False).locator("visible=true").first


PAGE_TITLES = {"label": "Label", "grid": "Grid", "dashboard": "Dashboard", "setup": "Project setup"}


def go(page: Any, name: str) -> None:
    """Switch page through the sidebar (the session, and so the annotator, is kept)."""
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_role("link", name=PAGE_TITLES[name], exact=True).click()
    if name == "label":
        # Until the label page has rendered, the previous page's stale image may still match
        # IMAGE and a key press may land on no shortcut at all; the sample held for the
        # annotator then reappears with the same src, and press_and_wait would wait forever.
        page.locator(".st-key-class_buttons").wait_for()
        page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()


def test_payloads_are_shown_as_text_never_run(
    xss_server: AppServer, browser: Any, images: Path
) -> None:
    dialogs: list[str] = []
    page = open_label_page_without_sample(browser, xss_server.url, dialogs)

    # Setup: import the folder through the page; the report names the rejected payload file.
    go(page, "setup")
    page.locator(".st-key-import_folder_path input").fill(str(images))
    page.locator(".st-key-import_folder_path input").press("Enter")
    page.locator(".st-key-import_folder button").click()
    page.get_by_text(f"{N_IMAGES} imported, 0 duplicates skipped, 1 rejected").wait_for()
    visible_text(page, FILE_JUNK).wait_for()
    # A second import lists every file as a duplicate, the payload-named image among them.
    page.locator(".st-key-import_folder button").click()
    # Nothing new and one file rejected: the report is an error, by design.
    again = f"0 imported, {N_IMAGES} duplicates skipped, 1 rejected."
    page.get_by_text(again).wait_for()
    page.get_by_text(re.compile(r"duplicates \(already in the project\)")).click()
    visible_text(page, FILE_IMAGE).wait_for()
    visible_text(page, PROJECT).wait_for()  # the page's subheader
    visible_text(page, CLASS_SCRIPT).wait_for()  # the classes section
    assert_inert(page, dialogs, "setup", expected_error=again)
    screenshot(page, "e2e-xss-1-setup")

    # Label page: the class buttons carry the payloads as text; label with the keyboard.
    go(page, "label")
    page.wait_for_selector(IMAGE)
    # (Long names get a help tooltip, and a button with help is drawn twice, once hidden for
    # measuring: the first is the button.)
    for name in CLASSES:
        page.locator(".st-key-class_buttons").get_by_text(name, exact=True).first.wait_for()
    visible_text(page, f"Labeling as {ANNOTATOR}").wait_for()
    for index in range(N_LABELED):
        press_and_wait(page, "123"[index % 3])
    assert_inert(page, dialogs, "label")
    screenshot(page, "e2e-xss-2-label")

    # A tiny round, queued with "Retrain now": the app starts the worker itself.
    go(page, "setup")
    # (A button with help text is drawn twice, once hidden for measuring: click by role.)
    page.locator(".st-key-retrain_now").get_by_role("button", name="Retrain now").click()
    page.locator(".st-key-status_panel").get_by_text("ranking is 0 labels old").wait_for(
        timeout=ROUND_TIMEOUT_MS
    )
    assert_inert(page, dialogs, "setup after the round", expected_error=again)

    # Label page after the round: the sample leased before it is labeled, and the next one,
    # ranked by the new model, shows the members' votes by class name.
    go(page, "label")
    page.wait_for_selector(IMAGE)
    press_and_wait(page, "3")
    visible_text(page, "Members' top class").wait_for()
    votes = visible_text(page, "Members' top class").inner_text()
    assert any(name in votes for name in CLASSES), votes
    assert_inert(page, dialogs, "label after the round")
    screenshot(page, "e2e-xss-3-label-ranked")

    # Grid page: every cell starts undecided and offers the model's guess as an "Accept: <class>"
    # suggestion, the class name shown as text.
    go(page, "grid")
    page.locator(".st-key-grid_submit").wait_for()
    values = page.locator('.stForm [data-testid="stSelectbox"] input').evaluate_all(
        "inputs => inputs.map(input => input.value)"
    )
    assert values and all(value == "" for value in values), values
    selector = '[class*="st-key-grid_accept_"]:not(.st-key-grid_accept_all)'
    # Under load the buttons can be in the page a moment before their labels are.
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].every(e => e.innerText.trim() !== '')",
        arg=selector,
    )
    accepts = page.locator(selector)
    suggestions = [text.strip() for text in accepts.all_inner_texts()]
    # Each suggestion names a class verbatim: neither run nor shown as escaped entities.
    assert len(suggestions) == len(values), suggestions
    assert all(text.removeprefix("Accept: ") in CLASSES for text in suggestions), suggestions
    assert_inert(page, dialogs, "grid")
    screenshot(page, "e2e-xss-4-grid")

    # Dashboard: class names are drawn as literal text in the Plotly charts (the annotator's
    # name is only in hover text there: one annotator, so no legend).
    go(page, "dashboard")
    page.get_by_text("Latest finished round").wait_for()
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    page.get_by_role("tab", name="Labels and people").click()
    page.locator(".st-key-chart_per_class .main-svg").first.wait_for()
    svg_text = " ".join(page.locator('[data-testid="stPlotlyChart"] svg').all_text_contents())
    for name in CLASSES:
        assert name in svg_text, f"{name!r} is not drawn as text in the charts"
    assert_inert(page, dialogs, "dashboard")
    # Streamlit scrolls inside its own container: a tall window shows the whole page.
    page.set_viewport_size({"width": 1400, "height": 2400})
    page.wait_for_timeout(500)
    screenshot(page, "e2e-xss-5-dashboard")
    page.context.close()
    assert dialogs == []


def open_label_page_without_sample(browser: Any, url: str, dialogs: list[str]) -> Any:
    """Signed in as the payload annotator, every dialog recorded (and dismissed)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(url)
    page.locator(".st-key-annotator_name input").fill(ANNOTATOR)
    page.locator(".st-key-annotator_start button").click()
    # No images yet: the page says so instead of showing a sample.
    page.get_by_text("Nothing left to label").wait_for()
    return page
