"""A team on one server, in a real Chromium: a lead and an annotator log in with passwords in two
browser contexts; each sees only what their role may use; a reload keeps the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activelearn import Workspace
from tests.e2e.conftest import IMAGE, AppServer, press_and_wait, screenshot, serve_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LEAD, ANNOTATOR = "lena", "ana"
PASSWORDS = {LEAD: "lead password 1", ANNOTATOR: "annotator password 2"}
NAV = '[data-testid="stSidebarNav"]'
# The settings form's save button is keyed by project (setting_save_<project id>).
SAVE_SETTINGS = '[class*="st-key-setting_save_"]'


def _team(workspace: Workspace) -> None:
    workspace.ensure_demo().update_settings(retrain_every=0)
    for name, role in ((LEAD, "lead"), (ANNOTATOR, "annotator")):
        workspace.set_role(name, role)
        workspace.set_password(name, PASSWORDS[name])


@pytest.fixture(scope="module")
def team_server(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with serve_app(tmp_path_factory.mktemp("team"), _team) as server:
        yield server


def _context(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    return page


def _log_in(page: Any, name: str, password: str) -> None:
    page.locator(".st-key-login_name input").fill(name)
    page.locator(".st-key-login_password input").fill(password)
    page.locator(".st-key-login_submit button").click()


def _nav_titles(page: Any) -> list[str]:
    page.wait_for_selector(NAV)
    # Each link reads "<icon name>\n\n<title>": the title is the last line.
    return [text.strip().split("\n")[-1] for text in page.locator(f"{NAV} a").all_inner_texts()]


def _audit(server: AppServer) -> list[tuple[str, str]]:
    with Workspace(server.db_url, data_dir=server.data_dir) as workspace:
        log = workspace.audit_log()
    return list(zip(log["actor"], log["action"], strict=True))


def test_lead_and_annotator_with_passwords(team_server: AppServer, browser: Any) -> None:
    url = team_server.url
    lead, annotator = _context(browser), _context(browser)

    # Not logged in: the label page's URL works and asks for a log-in; no labeling yet.
    annotator.goto(url + "/label")
    annotator.wait_for_selector(".st-key-login_name input")
    assert "Page not found" not in annotator.content()
    _log_in(annotator, ANNOTATOR, "not the password")
    annotator.get_by_text("Wrong name or password.").wait_for()
    _log_in(annotator, ANNOTATOR, PASSWORDS[ANNOTATOR])
    annotator.wait_for_selector(IMAGE)
    assert _nav_titles(annotator) == ["Label", "Grid"]
    first = annotator.locator(IMAGE).get_attribute("src")
    second = press_and_wait(annotator, "3")
    assert second != first
    screenshot(annotator, "e2e-team-annotator")

    # The lead, in another browser context, starting from the root URL.
    lead.goto(url)
    lead.wait_for_selector(".st-key-login_name input")
    assert lead.url.rstrip("/").endswith("/label")
    _log_in(lead, LEAD, PASSWORDS[LEAD])
    lead.wait_for_selector(IMAGE)
    assert _nav_titles(lead) == ["Label", "Grid", "Dashboard", "Project setup"]

    # Reloads keep both sessions.
    annotator.reload()
    annotator.wait_for_selector(IMAGE)
    assert annotator.locator(".st-key-login_name").count() == 0
    assert annotator.locator(IMAGE).get_attribute("src") == second  # her held task
    lead.goto(url + "/setup")
    lead.get_by_text("Audit log").first.wait_for()
    lead.locator(f"{SAVE_SETTINGS} button").first.click()
    lead.get_by_text("Settings saved").wait_for()
    lead.reload()
    lead.get_by_text("Audit log").first.wait_for()
    assert lead.locator(".st-key-login_name").count() == 0
    screenshot(lead, "e2e-team-lead-setup")

    # The annotator cannot reach the lead's pages by URL.
    annotator.goto(url + "/setup")
    annotator.wait_for_selector(IMAGE)
    annotator.get_by_text("Page not found").first.wait_for()
    assert annotator.locator(SAVE_SETTINGS).count() == 0
    assert annotator.locator(".st-key-import_folder").count() == 0
    annotator.goto(url + "/dashboard")
    annotator.wait_for_selector(IMAGE)
    assert annotator.locator(".st-key-export_labels_csv").count() == 0

    # Log out ends the session, also after a reload.
    annotator.goto(url + "/label")  # (the page-not-found notice above blocks the sidebar)
    annotator.wait_for_selector(IMAGE)
    annotator.locator(".st-key-logout button").click()
    annotator.wait_for_selector(".st-key-login_name input")
    annotator.reload()
    annotator.wait_for_selector(".st-key-login_name input")

    with Workspace(team_server.db_url, data_dir=team_server.data_dir) as workspace:
        labels = workspace.project("demo").labels()
    assert labels["annotator"].tolist() == [ANNOTATOR]
    assert (LEAD, "change settings") in _audit(team_server)
    assert not any(actor == ANNOTATOR for actor, _action in _audit(team_server))
    lead.context.close()
    annotator.context.close()


def test_open_mode_name_survives_a_reload(app_server: AppServer, browser: Any) -> None:
    """No lead: a typed name, no password; a reload keeps it, "Change annotator" forgets it."""
    from tests.browser import sign_in

    page = _context(browser)
    page.goto(app_server.url + "/label")
    sign_in(page, "noor")
    assert _nav_titles(page) == ["Label", "Grid", "Dashboard", "Project setup"]
    page.reload()
    page.wait_for_selector(IMAGE)
    assert page.locator(".st-key-annotator_name").count() == 0
    page.get_by_text("Labeling as").first.wait_for()
    page.locator(".st-key-annotator_change button").click()
    page.wait_for_selector(".st-key-annotator_name input")
    page.reload()
    page.wait_for_selector(".st-key-annotator_name input")
    page.context.close()
