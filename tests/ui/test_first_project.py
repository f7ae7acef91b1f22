"""Issue 16: what a first real project tripped over, page by page (AppTest)."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from activelearn import InvalidClasses, Project, Task, Workspace
from activelearn.ui import components
from activelearn.ui.app_pages import grid as grid_page
from activelearn.ui.app_pages import setup as setup_page
from tests.conftest import png_bytes
from tests.services.test_rounds import run_one
from tests.ui.conftest import CLASSES, PAGES, new_app, signed_in


def setup_app() -> object:
    at = new_app().run()
    at.switch_page(f"{PAGES}/setup.py").run()
    assert not at.exception, at.exception
    return at


# ------------------------------------------------------------------ item 1: settings


def test_saving_after_a_project_switch_keeps_the_new_projects_settings(
    app_env: Workspace, project: Project
) -> None:
    other = app_env.create_project("other", ["a", "b"], settings={"audit_share": 0.1})
    project.update_settings(audit_share=0.0, members=2)
    at = setup_app()
    assert at.number_input(key=setup_page.setting_key(project, "audit_share")).value == 0.0
    at.selectbox(key="project_picker").select("other").run()
    assert not at.exception, at.exception
    # The form now shows the other project's values...
    assert at.number_input(key=setup_page.setting_key(other, "audit_share")).value == 10.0
    # ...and saving it unchanged writes them back unchanged.
    at.button(key=setup_page.setting_key(other, "save")).click().run()
    assert not at.exception, at.exception
    assert other.settings.audit_share == pytest.approx(0.1)
    assert other.settings.members == 5
    assert project.settings.audit_share == 0.0


def test_image_size_and_channels_are_shown_and_changed(
    app_env: Workspace, project: Project
) -> None:
    at = setup_app()
    assert at.number_input(key=setup_page.setting_key(project, "image_size")).value == 28
    assert at.selectbox(key=setup_page.setting_key(project, "channels")).value == 1
    at.number_input(key=setup_page.setting_key(project, "image_size")).set_value(64)
    at.selectbox(key=setup_page.setting_key(project, "channels")).select(3)
    at.button(key=setup_page.setting_key(project, "save")).click().run()
    assert not at.exception, at.exception
    assert (project.settings.image_size, project.settings.channels) == (64, 3)


# ------------------------------------------------------------------ item 5: class names


def test_class_names_are_one_per_line_never_split_at_commas() -> None:
    text = "Northern cardinal (Cardinalis cardinalis), adult male\n\n  Blue jay  \nfox, red\n"
    assert setup_page.parse_classes(text) == [
        "Northern cardinal (Cardinalis cardinalis), adult male",
        "Blue jay",
        "fox, red",
    ]


def test_classes_differing_only_in_case_are_refused(app_env: Workspace) -> None:
    with pytest.raises(InvalidClasses, match="Cat, cat"):
        app_env.create_project("pets", ["Cat", "cat", "dog"])
    at = setup_app()
    at.text_input(key="new_project_name").input("pets")
    at.text_area(key="new_project_classes").input("Cat\ndog\ncat\nCAT")
    at.button(key="create_project").click().run()
    assert not at.exception, at.exception
    assert "upper and lower case count as the same" in at.error[0].value
    assert "pets" not in [p.name for p in app_env.projects()]


def test_adding_a_class_that_differs_only_in_case_is_refused(project: Project) -> None:
    with pytest.raises(InvalidClasses, match="case"):
        project.add_classes(["Dog"])
    assert project.add_classes(["dog", "owl, barn"]) == ["cat", "dog", "bird", "owl, barn"]


# ------------------------------------------------------------------ item 7: round controls


def test_retrain_now_is_off_until_there_is_a_label(app_env: Workspace, project: Project) -> None:
    at = setup_app()
    assert at.button(key="retrain_now").disabled
    assert any("Label at least one pool sample first" in c.value for c in at.caption)
    # The callback checks again (the button may have been drawn before the labels went).
    setup_page.on_retrain(app_env, project)
    assert project.active_round() is None
    task = project.next_task("ana")
    project.submit(task.id, label="cat", annotator="ana")
    at.run()
    assert not at.button(key="retrain_now").disabled


# ------------------------------------------------------------------ item 10: small things


def test_create_form_is_cleared_and_its_message_is_plain_text(app_env: Workspace) -> None:
    at = setup_app()
    at.text_input(key="new_project_name").input("**birds** [x](y)")
    at.text_area(key="new_project_classes").input("owl\nwren")
    at.button(key="create_project").click().run()
    assert not at.exception, at.exception
    # Shown as typed, not as bold text and a link.
    assert r"\*\*birds\*\* \[x\]\(y\)" in at.success[0].value
    assert at.text_input(key="new_project_name").value == ""
    assert at.text_area(key="new_project_classes").value == ""


def test_an_old_import_report_does_not_stay_under_a_new_error(
    app_env: Workspace, project: Project, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("z.png", png_bytes(900))
    at = setup_app()
    at.file_uploader(key="import_zip_file").upload("pack.zip", buffer.getvalue(), "application/zip")
    at.run()
    at.button(key="import_zip").click().run()
    assert any("Import report" in m.value for m in at.markdown)
    at.text_input(key="import_folder_path").input(str(tmp_path / "nowhere"))
    at.button(key="import_folder").click().run()
    assert at.error
    assert not any("Import report" in m.value for m in at.markdown)


def test_projects_table_counts_match_the_status_bar(app_env: Workspace, project: Project) -> None:
    task = project.next_task("ana")
    project.submit(task.id, label="cat", annotator="ana")
    at = setup_app()
    # The audit log (issue 13) has a "project" column too: the projects table also has "of".
    [table] = [f.value for f in at.dataframe if {"project", "of"} <= set(f.value.columns)]
    row = table.set_index("project").loc["tiny"]
    status = project.status()
    assert row["labeled"] == status.n_labeled + status.n_eval == 1
    assert row["of"] == status.n_pool + status.n_eval == 30
    assert row["model"] == "none yet"
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()


# ------------------------------------------------------------------ items 2 and 3: the grid


def _trained(app_env: Workspace, project: Project) -> None:
    for _ in range(12):
        task = project.next_task("seed")
        project.submit(task.id, label=CLASSES[task.sample_id % 3], annotator="seed")
    project.request_round(requested_by="test")
    assert run_one(app_env, project) == "succeeded"


def test_grid_stores_a_suggestion_only_when_accepted(app_env: Workspace, project: Project) -> None:
    _trained(app_env, project)
    before = len(project.labels())
    at = signed_in("ana", page="grid.py")
    tasks = at.session_state["grid_tasks"][2]
    guesses = {task.id: grid_page.predicted_label(task, CLASSES) for task in tasks}
    assert all(guesses.values())
    picked, accepted, skipped = tasks[0], tasks[1], tasks[2]
    other = next(name for name in CLASSES if name != guesses[picked.id])
    at.selectbox(key=grid_page.cell_key(picked)).set_value(other)
    at.checkbox(key=grid_page.accept_key(accepted)).check()
    at.checkbox(key=grid_page.skip_key(skipped)).check()
    at.button(key="grid_submit").click().run()
    assert not at.exception, at.exception
    mine = project.labels().query("annotator == 'ana'").set_index("sample_id")["label"].to_dict()
    # Nine cells left alone stored nothing: no guess was taken for a label.
    assert mine == {picked.sample_id: other, accepted.sample_id: guesses[accepted.id]}
    assert len(project.labels()) == before + 2
    assert "Stored 2 labels. Skipped 1. 9 not decided" in at.success[0].value
    # One action accepts every suggestion shown (a pick or a skip still wins).
    page = at.session_state["grid_tasks"][2]
    # 18 open: the 9 undecided are held back from this page, which takes the 6 others and,
    # behind them, the skipped one.
    assert {t.sample_id for t in page} & {t.sample_id for t in tasks} == {skipped.sample_id}
    assert len(page) == 7
    at.checkbox(key=grid_page.skip_key(page[0])).check()
    at.button(key="grid_accept_all").click().run()
    assert not at.exception, at.exception
    mine = project.labels().query("annotator == 'ana'").set_index("sample_id")["label"].to_dict()
    for task in page[1:]:
        assert mine[task.sample_id] == grid_page.predicted_label(task, CLASSES)
    assert page[0].sample_id not in mine


def test_grid_cells_are_named_for_screen_readers(app_env: Workspace, project: Project) -> None:
    at = signed_in("ana", page="grid.py")
    tasks = at.session_state["grid_tasks"][2]
    labels = [at.selectbox(key=grid_page.cell_key(task)).label for task in tasks]
    assert len(set(labels)) == len(tasks)
    assert all(label.startswith("Label for img") for label in labels)


def test_grid_samples_held_before_round_one_are_not_served_as_cold_start(
    app_env: Workspace, project: Project
) -> None:
    at = signed_in("ana", page="grid.py")
    held = {task.sample_id for task in at.session_state["grid_tasks"][2]}
    assert len(held) == 12
    _trained(app_env, project)
    at.switch_page(f"{PAGES}/label.py").run()
    assert not at.exception, at.exception
    task = at.session_state["label_task"][2]
    assert task.strategy == "bald", "the grid's cold-start leases were given back on leaving it"
    why = " ".join(m.value for m in at.markdown)
    assert "Cold start: random order" not in why


def test_why_text_for_a_cold_start_pick_scored_since() -> None:
    task = Task(
        id=1,
        sample_id=1,
        image="x.png",
        rank=None,
        strategy="cold_start",
        round_id=None,
        expires_at=datetime(2030, 1, 1),
        scores={"mutual_information": 0.3},
    )
    text = components.why_chosen(task)
    assert "before the first model" in text and "Cold start: random order" not in text


# ------------------------------------------------------------------ item 10: who is labeling


def test_change_annotator_gives_the_sample_back(app_env: Workspace, project: Project) -> None:
    at = signed_in("ana")
    task = at.session_state["label_task"][2]
    at.button(key="annotator_change").click().run()
    assert not at.exception, at.exception
    others = {t.sample_id for t in project.next_tasks("bo", count=30)}
    assert task.sample_id in others


def test_annotator_names_ignore_case(app_env: Workspace, project: Project) -> None:
    task = project.next_task("ana")
    project.submit(task.id, label="cat", annotator="ana")
    at = signed_in("ANA")
    assert at.session_state["annotator"] == "ana"


def test_import_report_lists_label_conflicts(app_env: Workspace, project: Project) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cat/a.png", png_bytes(777))
        archive.writestr("dog/a.png", png_bytes(777))
    at = setup_app()
    at.file_uploader(key="import_zip_file").upload("pets.zip", buffer.getvalue(), "application/zip")
    at.run()
    at.button(key="import_zip").click().run()
    assert not at.exception, at.exception
    assert "1 label conflict (not imported)" in " ".join(w.value for w in at.warning)
    [table] = [f.value for f in at.dataframe if "conflict" in f.value.columns]
    assert list(table["file"]) == ["pets.zip!dog/a.png"]
    assert "cat/a.png" in table["conflict"][0]
    # The projects table counts the import made in the same run.
    [projects] = [f.value for f in at.dataframe if {"project", "of"} <= set(f.value.columns)]
    assert projects.set_index("project").loc["tiny", "of"] == 31


def test_grid_page_held_over_a_round_is_replaced_by_the_new_ranking(
    app_env: Workspace, project: Project
) -> None:
    at = signed_in("ana", page="grid.py")
    assert all(not t.scores for t in at.session_state["grid_tasks"][2])
    _trained(app_env, project)
    at.run()  # the same page, rerun after the round (no page switch)
    assert not at.exception, at.exception
    tasks = at.session_state["grid_tasks"][2]
    assert tasks and all(t.strategy == "bald" for t in tasks)
    assert at.button(key="grid_accept_all") is not None
