"""Project setup: create projects, import images, choose training settings, retrain now."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from activelearn import ActivelearnError, ImportReport, Project, Workspace
from activelearn.services.representation import features_changed
from activelearn.services.settings import (
    HOG_BACKBONE,
    KNOWN_LEARNERS,
    KNOWN_STRATEGIES,
    SSL_BACKBONE,
    ProjectSettings,
)
from activelearn.ui import components, state, team

REPORT_KEY = "setup_import_report"  # (project id, source shown, ImportReport)
LEARNER_NAMES = {
    "embedding": "Embedding heads",
    "cnn": "CNN ensemble",
}
TORCHVISION = "torchvision"
FEATURE_NAMES = {
    HOG_BACKBONE: "HOG + pixel PCA",
    SSL_BACKBONE: "Self-supervised",
    TORCHVISION: "Torchvision (pretrained)",
}
MESSAGE_KEY = "setup_message"  # (kind, text): one-shot result of the last action


def parse_classes(text: str) -> list[str]:
    """Class names typed one per line; blanks dropped, order kept.

    Never split at commas: "Northern cardinal, adult male" is one class.
    """
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def setting_key(project: Project, name: str) -> str:
    """The settings form's widget keys belong to one project: after a switch the form is a new
    set of widgets showing the new project's values, never the old project's."""
    return f"setting_{name}_{project.id}"


CHANNEL_CHOICES = {1: "grayscale (1 channel)", 3: "colour (3 channels, RGB)"}


def strategy_choices(current: str) -> list[str]:
    """One name per strategy (aliases dropped, the first spelling kept), plus the current one."""
    seen: set[str] = set()
    choices = []
    for name in KNOWN_STRATEGIES:
        shown = components.STRATEGY_NAMES.get(name, name)
        if shown not in seen or name == current:
            seen.add(shown)
            choices.append(name)
    return choices


def _message(kind: str, text: str) -> None:
    st.session_state[MESSAGE_KEY] = (kind, text)


def _show_message() -> None:
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message is not None:
        kind, text = message
        {"error": st.error, "success": st.success, "info": st.info}[kind](text)


# ------------------------------------------------------------------ actions (widget callbacks)


def on_create(ws: Workspace) -> None:
    name = st.session_state.get("new_project_name", "")
    classes = parse_classes(st.session_state.get("new_project_classes", ""))
    try:
        project = ws.create_project(name, classes)
    except ActivelearnError as error:
        _message("error", str(error))
        return
    state.select_project(project.name)
    st.session_state["new_project_name"] = ""
    st.session_state["new_project_classes"] = ""
    st.session_state.pop(REPORT_KEY, None)
    _message("success", f"Created project {components.md(project.name)} ({len(classes)} classes).")


def _store_report(project: Project, source: str, report: ImportReport) -> None:
    st.session_state[REPORT_KEY] = (project.id, source, report)


def _run_import(project: Project, source: str, run: Callable[[], ImportReport]) -> None:
    # An old report must not stay on screen under the new attempt's error.
    st.session_state.pop(REPORT_KEY, None)
    try:
        _store_report(project, source, run())
    except ActivelearnError as error:
        _message("error", str(error))
        return
    # An import queues the representation stage: start a worker now, so the typical cold-start
    # order (and the embeddings the first round needs) are ready before the first labels.
    latest = project.representation_status().latest
    if latest is not None and latest.status == "queued":
        problem = state.kick_worker(project.workspace)
        if problem is not None:
            _message("error", problem)


def on_import_folder(project: Project) -> None:
    path = (st.session_state.get("import_folder_path") or "").strip()
    if not path:
        _message("error", "Type the path of a folder on the server first.")
        return
    _run_import(project, path, lambda: project.import_images(path))


def on_import_manifest(project: Project) -> None:
    path = (st.session_state.get("import_manifest_path") or "").strip()
    if not path:
        _message("error", "Type the path of a CSV manifest on the server first.")
        return
    _run_import(project, path, lambda: project.import_manifest(path))


def on_import_zip(project: Project) -> None:
    upload = st.session_state.get("import_zip_file")
    if upload is None:
        _message("error", "Choose a zip file first.")
        return
    _run_import(
        project, upload.name, lambda: project.import_zip(upload.getvalue(), name=upload.name)
    )


def _backbone_value(project: Project) -> str:
    chosen = st.session_state[setting_key(project, "backbone")]
    if chosen != TORCHVISION:
        return str(chosen)
    architecture = str(st.session_state[setting_key(project, "architecture")]).strip()
    return f"{TORCHVISION}:{architecture}"


def on_save_settings(ws: Workspace, project: Project) -> None:
    def value(name: str) -> object:
        return st.session_state[setting_key(project, name)]

    before = project.settings
    try:
        after = project.update_settings(
            learner=value("learner"),
            backbone=_backbone_value(project),
            backbone_weights=str(value("backbone_weights")).strip(),
            ssl_epochs=int(value("ssl_epochs")),
            strategy=value("strategy"),
            members=int(value("members")),
            epochs=int(value("epochs")),
            retrain_every=int(value("retrain_every")),
            audit_share=float(value("audit_share")) / 100.0,
            image_size=int(value("image_size")),
            channels=int(value("channels")),
        )
    except ActivelearnError as error:
        _message("error", str(error))
        return
    latest = project.representation_status().latest
    if features_changed(before, after) and latest is not None and latest.status == "queued":
        problem = state.kick_worker(ws)
        _message(
            "error" if problem else "success",
            problem
            or "Settings saved: new features are being computed (representation job "
            f"{latest.id}); rounds use the current ones until they are ready.",
        )
        return
    _message("success", "Settings saved: the next round uses them.")


def on_retrain(ws: Workspace, project: Project) -> None:
    try:
        if project.status().n_labeled == 0:
            # Training needs labeled pool samples: a round queued now could only fail.
            _message("error", "Nothing to train on yet: label at least one pool sample first.")
            return
        info = project.request_round(requested_by=state.annotator() or "setup page")
    except ActivelearnError as error:
        _message("error", str(error))
        return
    problem = state.kick_worker(ws)
    if problem is not None:
        _message("error", f"Round {info.id} is {info.status}. {problem}")
        return
    _message("info", f"Round {info.id} is {info.status}; the status bar shows its progress.")


def on_cancel(project: Project) -> None:
    try:
        info = project.cancel_round()
    except ActivelearnError as error:
        _message("error", str(error))
        return
    _message("info", "No round to cancel." if info is None else f"Round {info.id}: cancel asked.")


def on_add_classes(project: Project) -> None:
    names = parse_classes(st.session_state.get("add_classes_names", ""))
    if not names:
        _message("error", "Type at least one class name.")
        return
    try:
        merged = project.add_classes(names)
    except ActivelearnError as error:
        _message("error", str(error))
        return
    st.session_state["add_classes_names"] = ""
    _message("success", "The classes are now: " + "; ".join(components.md(c) for c in merged))


# ------------------------------------------------------------------ sections


def _import_report(project: Project) -> None:
    stored = st.session_state.get(REPORT_KEY)
    if stored is None or stored[0] != project.id:
        return
    _, source, report = stored
    st.markdown(f"**Import report** for `{source.replace('`', '')}`")
    kind = st.success if report.accepted and not report.rejected else st.warning
    if not report.accepted and report.rejected:
        kind = st.error
    if report.conflicts:
        kind = st.warning
    n_conflicts = len(report.conflicts)
    conflicts = (
        f", {n_conflicts:,} label conflict{'s' if n_conflicts != 1 else ''} (not imported)"
        if n_conflicts
        else ""
    )
    kind(
        f"{len(report.accepted):,} imported, {len(report.duplicates):,} duplicates skipped, "
        f"{len(report.rejected):,} rejected{conflicts}."
    )
    st.text(report.summary())
    if report.rejected:
        st.dataframe(
            pd.DataFrame(report.rejected, columns=["file", "reason"]),
            hide_index=True,
            width="stretch",
        )
    if report.conflicts:
        st.markdown("**Label conflicts**: the same image already has another label")
        st.dataframe(
            pd.DataFrame(report.conflicts, columns=["file", "conflict"]),
            hide_index=True,
            width="stretch",
            key="import_conflicts",
        )
    if report.duplicates:
        with st.expander(f"{len(report.duplicates):,} duplicates (already in the project)"):
            st.text("\n".join(report.duplicates[:500]))


def _create_section(ws: Workspace) -> None:
    with st.form("create_project_form"):
        st.markdown("**Create a project**")
        st.text_input("Name", key="new_project_name", max_chars=200, placeholder="e.g. digits")
        st.text_area(
            "Classes",
            key="new_project_classes",
            placeholder="cat\ndog\nbird",
            help="One class per line (commas are part of a name). At least two.",
        )
        st.form_submit_button(
            "Create project", key="create_project", type="primary", on_click=on_create, args=(ws,)
        )


def _import_section(project: Project) -> None:
    st.markdown("**Import images**")
    team.import_roots_caption(project.workspace)
    limit = int(st.get_option("server.maxUploadSize"))
    # Keyed, with its choice kept: a rerun (choosing a zip) must not jump back to the first tab.
    folder, manifest, upload = st.tabs(
        ["Server folder", "CSV manifest", "Zip upload"], key="import_tabs", on_change="rerun"
    )
    with folder:
        st.text_input(
            "Folder path on the server",
            key="import_folder_path",
            help="A flat folder goes to the pool; class sub-folders import as labeled samples.",
        )
        clicked = st.button("Import folder", key="import_folder")
    if clicked:
        with st.spinner("Importing the folder…", show_time=True):
            on_import_folder(project)
    with manifest:
        st.text_input(
            "CSV manifest path on the server",
            key="import_manifest_path",
            help="Columns: path (required), label and split (optional).",
        )
        clicked = st.button("Import manifest", key="import_manifest")
    if clicked:
        with st.spinner("Importing the manifest…", show_time=True):
            on_import_manifest(project)
    with upload:
        st.file_uploader(
            f"Zip of images (up to {limit:,} MB)",
            type=["zip"],
            key="import_zip_file",
            help="Images at the top level go to the pool; class sub-folders import as labeled.",
        )
        clicked = st.button("Import zip", key="import_zip")
    if clicked:
        with st.spinner("Importing the zip…", show_time=True):
            on_import_zip(project)
    _show_message()
    _import_report(project)


def _settings_section(ws: Workspace, project: Project) -> None:
    settings = project.settings
    # Keyed by the project (see setting_key) so the form always shows and saves this project.
    with st.form(f"settings_form_{project.id}"):
        st.markdown("**Training**")
        _learner_fields(project, settings)
        strategies = strategy_choices(settings.strategy)
        st.selectbox(
            "Acquisition strategy",
            strategies,
            index=strategies.index(settings.strategy),
            key=setting_key(project, "strategy"),
            format_func=lambda name: components.STRATEGY_NAMES.get(name, name),
        )
        a, b = st.columns(2)
        a.number_input(
            "Ensemble size",
            1,
            64,
            settings.members,
            key=setting_key(project, "members"),
            help="Members (M).",
        )
        b.number_input(
            "Epochs per round", 1, 1000, settings.epochs, key=setting_key(project, "epochs")
        )
        a.number_input(
            "Retrain after this many new labels",
            0,
            100_000,
            settings.retrain_every,
            key=setting_key(project, "retrain_every"),
            help="1: a round after every label (about 2 s each with the embedding learner on "
            "the demo). 0 turns automatic retraining off.",
        )
        b.number_input(
            "Audit share (%)",
            0.0,
            99.0,
            round(settings.audit_share * 100, 1),
            step=1.0,
            key=setting_key(project, "audit_share"),
            help="Share of served samples drawn at random and held out to measure accuracy.",
        )
        a.number_input(
            "Image size (pixels)",
            8,
            256,
            settings.image_size,
            key=setting_key(project, "image_size"),
            help="Every image is resized to this square size for training and scoring.",
        )
        b.selectbox(
            "Channels",
            list(CHANNEL_CHOICES),
            index=list(CHANNEL_CHOICES).index(settings.channels),
            key=setting_key(project, "channels"),
            format_func=CHANNEL_CHOICES.__getitem__,
            help="Grayscale suits digits and scans; colour photos need 3 channels.",
        )
        st.form_submit_button(
            "Save settings",
            key=setting_key(project, "save"),
            on_click=on_save_settings,
            args=(ws, project),
        )
    st.fragment(_round_controls, run_every=_poll(components.STATUS_POLL_SECONDS))(ws, project)


def _learner_fields(project: Project, settings: ProjectSettings) -> None:
    """Learner and features (the representation stage's backbone) of the settings form."""
    st.selectbox(
        "Learner",
        list(KNOWN_LEARNERS),
        index=list(KNOWN_LEARNERS).index(settings.learner),
        key=setting_key(project, "learner"),
        format_func=lambda name: LEARNER_NAMES.get(name, name),
        help="Embedding heads: small heads on the pool's features, about a second to train on "
        "a CPU (a round after every label). CNN ensemble: small CNNs trained from scratch on "
        "the labeled pixels, about 15 s a round on a CPU.",
    )
    kind = settings.backbone.split(":", 1)[0]
    a, b = st.columns(2)
    a.selectbox(
        "Features",
        list(FEATURE_NAMES),
        index=list(FEATURE_NAMES).index(kind),
        key=setting_key(project, "backbone"),
        format_func=FEATURE_NAMES.__getitem__,
        help="What the embedding learner and the typiclust/auto strategies see: HOG + pixel "
        "PCA needs no training; self-supervised trains an encoder on the pool; torchvision "
        "uses a pretrained network from a local weights file. A change computes new features "
        "in the background; rounds keep the current ones meanwhile.",
    )
    b.number_input(
        "Self-supervised epochs",
        1,
        1000,
        settings.ssl_epochs,
        key=setting_key(project, "ssl_epochs"),
        help="Training epochs of the self-supervised encoder (its features only).",
    )
    a.text_input(
        "Torchvision architecture",
        settings.backbone.split(":", 1)[1] if kind == TORCHVISION else "",
        key=setting_key(project, "architecture"),
        placeholder="resnet18",
        help="For pretrained features only, e.g. resnet18 or efficientnet_b0.",
    )
    b.text_input(
        "Weights file",
        settings.backbone_weights,
        key=setting_key(project, "backbone_weights"),
        placeholder="/models/resnet18.safetensors",
        help="A local .safetensors (or .pth) file on the server: nothing is downloaded. "
        "The README says how to get ImageNet weights.",
    )


def _upload_pending() -> bool:
    """The zip tab is open with no file chosen yet. A timed fragment rerun that lands while the
    browser sends the chosen file made Streamlit drop the file (seen at 800x900 in Chromium), so
    the page's polling pauses until the file has arrived."""
    return (
        st.session_state.get("import_tabs") == "Zip upload"
        and st.session_state.get("import_zip_file") is None
    )


def _poll(seconds: float) -> float | None:
    """How often a fragment of this page refreshes itself: None (not at all) while an upload
    is pending."""
    return None if _upload_pending() else seconds


def _round_controls(ws: Workspace, project: Project) -> None:
    """Retrain now / Cancel round, re-read every poll so they never outlive the round."""
    try:
        active = project.active_round()
        status = project.status()
    except ActivelearnError as error:
        components.show_error(error)
        return
    trainable = status.n_labeled > 0
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button(
            "Retrain now",
            key="retrain_now",
            type="primary",
            icon=":material/model_training:",
            on_click=on_retrain,
            args=(ws, project),
            disabled=active is not None or not trainable,
            help="Queue a round now; the background worker trains it while labeling goes on.",
        )
        if active is not None:
            st.button("Cancel round", key="cancel_round", on_click=on_cancel, args=(project,))
            st.caption(f"Round {active.id} is {active.status}.")
        elif not trainable:
            st.caption("Label at least one pool sample first: a round needs labels to train on.")


def _classes_section(project: Project) -> None:
    st.markdown("**Classes**")
    # One per line, in full: long names wrap instead of being cut.
    st.text("\n".join(project.classes))
    with st.form(f"add_classes_form_{project.id}", border=False):
        st.text_area(
            "Add classes",
            key="add_classes_names",
            placeholder="fox\nowl",
            help="One class per line; commas are part of a name.",
        )
        st.form_submit_button("Add", key="add_classes", on_click=on_add_classes, args=(project,))


def _projects_table(ws: Workspace) -> None:
    """Every project with the same counts as the status bar; refreshed while the page is open
    (an import or a colleague's labels show up without a reload)."""
    rows = []
    for project in ws.projects():
        status = project.status()
        rows.append(
            {
                "project": project.name,
                "labeled": status.n_labeled + status.n_eval,
                "of": status.n_pool + status.n_eval,
                "test": status.n_test,
                "model": (
                    f"round {status.current_round_id}"
                    if status.current_round_id is not None
                    else "none yet"
                ),
            }
        )
    st.markdown("**Projects** (switch in the sidebar)")
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        key="projects_table",
        column_config={
            "labeled": st.column_config.NumberColumn("labeled", format="%d"),
            "of": st.column_config.NumberColumn(
                "pool + audit", format="%d", help="What the status bar counts labels out of."
            ),
            "test": st.column_config.NumberColumn(
                "gold test", format="%d", help="Imported test split: evaluation only."
            ),
        },
    )


def _projects_table_fragment(ws: Workspace) -> None:
    st.fragment(_projects_table, run_every=_poll(components.STATUS_POLL_SECONDS * 5))(ws)


def render() -> None:
    ws, project = components.page_start("Project setup")
    # Always one element, message or not: a message that comes and goes must not shift the
    # widgets below to new positions, where Streamlit would remount them (the chosen tab and
    # the file picked in the uploader were lost that way).
    with st.container(key="setup_messages"):
        _show_message()
    left, right = st.columns(2, gap="large")
    with left:
        _create_section(ws)
        # Filled last: an import below runs in this same script run, and the table must count it.
        table_slot = st.container(key="projects_table_slot")
        st.divider()
        team.people_section(ws)
        team.audit_section(ws, project)
    if project is None:
        with table_slot:
            _projects_table_fragment(ws)
        return
    with right:
        st.subheader(f"Project: {components.md(project.name)}")
        components.status_panel(ws, project, poll=not _upload_pending())
        _import_section(project)
        st.divider()
        _settings_section(ws, project)
        st.divider()
        _classes_section(project)
    with table_slot:
        _projects_table_fragment(ws)


if __name__ == "__main__":
    render()
