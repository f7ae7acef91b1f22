"""The app's pages, in menu order (app.py hands them to st.navigation): each role sees only
the pages it may use, and every page, the label page included, has a URL of its own."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from activelearn.ui import state

PAGES_DIR = Path(__file__).parent / "app_pages"


def _label_page() -> st.Page:
    return st.Page(PAGES_DIR / "label.py", title="Label", icon=":material/label:", url_path="label")


def _start() -> None:
    # The app's root URL opens the label page at /label, so that the URL in the address bar
    # (and any bookmark of it) names the page.
    st.switch_page(_label_page())


def pages() -> list[st.Page]:
    """Label and grid for everyone; dashboard and project setup for leads (and in open mode).
    The root URL is a hidden default page that moves on to /label."""
    shown = [
        _label_page(),
        st.Page(PAGES_DIR / "grid.py", title="Grid", icon=":material/grid_view:", url_path="grid"),
    ]
    if state.role() == "lead":
        shown += [
            st.Page(
                PAGES_DIR / "dashboard.py",
                title="Dashboard",
                icon=":material/monitoring:",
                url_path="dashboard",
            ),
            st.Page(
                PAGES_DIR / "setup.py",
                title="Project setup",
                icon=":material/settings:",
                url_path="setup",
            ),
        ]
    start = st.Page(_start, title="Start", url_path="start", default=True, visibility="hidden")
    return [start, *shown]
