"""The app's pages, in menu order (app.py hands them to st.navigation)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).parent / "app_pages"


def pages() -> list[st.Page]:
    """Label (the default), grid, dashboard and project setup."""
    return [
        st.Page(
            PAGES_DIR / "label.py",
            title="Label",
            icon=":material/label:",
            url_path="label",
            default=True,
        ),
        st.Page(PAGES_DIR / "grid.py", title="Grid", icon=":material/grid_view:", url_path="grid"),
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
