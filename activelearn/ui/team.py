"""The setup page's team sections: people and roles, the import folders, the audit log."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from activelearn import ActivelearnError, Project, Workspace
from activelearn.ingest.roots import ROOTS_ENV, roots_text
from activelearn.services import access
from activelearn.ui import components, state

MESSAGE_KEY = "team_message"
AUDIT_ROWS = 200


def import_roots_caption(ws: Workspace) -> None:
    roots = ws.import_roots or []
    if roots:
        st.caption(
            f"Server paths must lie under {components.md(roots_text(roots))} "
            f"(set {ROOTS_ENV} to change this); zip uploads come from your computer."
        )


def _say(kind: str, text: str) -> None:
    st.session_state[MESSAGE_KEY] = (kind, text)


def on_add_person(ws: Workspace) -> None:
    name = (st.session_state.get("person_name") or "").strip()
    role = st.session_state.get("person_role") or "annotator"
    password = st.session_state.get("person_password") or ""
    try:
        if not password and ws.role(name) is None and not state.login_configured():
            raise ActivelearnError("Give the new person a password (at least 8 characters).")
        ws.set_role(name, role)
        if password:
            ws.set_password(name, password)
    except ActivelearnError as error:
        _say("error", str(error))
        return
    _say("success", f"{name} is now {'a' if role == 'lead' else 'an'} {role}.")


def on_remove_person(ws: Workspace, name: str) -> None:
    try:
        ws.remove_user(name)
    except ActivelearnError as error:
        _say("error", str(error))
        return
    _say("success", f"Removed {name}; their labels stay.")


def people_section(ws: Workspace) -> None:
    """Leads add annotators (with a password) and other leads, change roles, remove people."""
    st.markdown("**People**")
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message is not None:
        {"error": st.error, "success": st.success}[message[0]](message[1])
    if state.open_mode():
        st.info(
            "Open mode: anyone who can reach this app may do everything, so it listens on this "
            "computer only. To serve a team, create a lead on the server with "
            "`activelearn user add NAME --role lead`; log-in is then required (see the README).",
            icon=":material/lock_open:",
        )
        return
    everyone = access.list_people(ws)
    st.dataframe(
        pd.DataFrame(
            [(p.name, p.role, "yes" if p.has_password else "no") for p in everyone],
            columns=["name", "role", "password"],
        ),
        hide_index=True,
        width="stretch",
        key="people_table",
    )
    with st.form("person_form", clear_on_submit=True):
        left, middle, right = st.columns(3)
        left.text_input("Name", key="person_name", max_chars=200)
        middle.selectbox("Role", access.ROLES[::-1], key="person_role")
        right.text_input("Password", key="person_password", type="password")
        st.form_submit_button("Add or change", key="person_add", on_click=on_add_person, args=(ws,))
    with st.container(horizontal=True, vertical_alignment="bottom"):
        names = [p.name for p in everyone if p.name != ws.user]
        chosen = st.selectbox("Remove someone", names, index=None, key="person_remove_name")
        st.button(
            "Remove",
            key="person_remove",
            disabled=chosen is None,
            on_click=lambda: on_remove_person(ws, str(chosen)),
        )


def audit_section(ws: Workspace, project: Project | None) -> None:
    """The newest lead actions, and the whole log as CSV."""
    st.markdown("**Audit log** (lead actions: imports, settings, rounds, exports, roles, ...)")
    try:
        log = access.audit_log(ws, limit=AUDIT_ROWS)
    except ActivelearnError as error:
        components.show_error(error)
        return
    st.dataframe(log, hide_index=True, width="stretch", key="audit_table", height=240)
    st.download_button(
        "Audit log (CSV)",
        data=lambda: access.audit_csv_bytes(ws),
        file_name="activelearn-audit.csv",
        mime="text/csv",
        key="export_audit_csv",
    )
