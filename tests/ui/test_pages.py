"""AppTest over every page: renders, widgets by key, and labels that land in the database."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from activelearn import Project, Workspace
from activelearn.services import rounds
from activelearn.ui.app_pages import grid as grid_page
from activelearn.ui.app_pages import label as label_page
from activelearn.ui.app_pages import setup as setup_page
from activelearn.ui.components import md, ranking_badge
from tests.conftest import png_bytes, write_images
from tests.services.test_rounds import run_one
from tests.ui.conftest import CLASSES, PAGES, new_app, signed_in


def rejected_table(at: AppTest) -> pd.DataFrame:
    [table] = [frame.value for frame in at.dataframe if "reason" in frame.value.columns]
    return table


def shown_task(at: AppTest) -> object:
    held = at.session_state["label_task"]
    assert held is not None
    return held[2]


# ------------------------------------------------------------------ every page renders


@pytest.mark.parametrize("page", ["label.py", "grid.py", "setup.py"])
def test_page_renders_without_exception(app_env: Workspace, page: str) -> None:
    at = new_app().run()
    at.switch_page(f"{PAGES}/{page}").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="project_picker").value == "tiny"
    if page != "setup.py":
        # Nobody has said who they are yet: the page asks first.
        assert at.text_input(key="annotator_name") is not None
        assert at.button(key="annotator_start") is not None


def test_label_page_widgets_by_key(app_env: Workspace) -> None:
    at = signed_in("ana")
    for index in range(len(CLASSES)):
        assert at.button(key=label_page.class_button_key(index)).label == CLASSES[index]
    assert at.button(key="label_skip") is not None
    assert at.button(key="label_undo") is not None
    assert at.session_state["annotator"] == "ana"
    task = shown_task(at)
    assert task.strategy == "cold_start"
    # The sample is inline, enlarged by a whole factor: 16 px noise -> 336 px.
    [uri] = at.image[0].value
    assert uri.startswith("data:image/png;base64,")
    from base64 import b64decode

    from PIL import Image

    with Image.open(io.BytesIO(b64decode(uri.split(",", 1)[1]))) as shown:
        assert shown.size == (336, 336)


def test_name_is_required(app_env: Workspace) -> None:
    at = new_app().run()
    at.button(key="annotator_start").click().run()
    assert not at.exception
    assert "Please type a name" in at.error[0].value
    assert "annotator" not in at.session_state


# ------------------------------------------------------------------ labeling


def test_label_lands_in_database(app_env: Workspace, project: Project) -> None:
    at = signed_in("ana")
    task = shown_task(at)
    at.button(key=label_page.class_button_key(1)).click().run()
    assert not at.exception, at.exception
    labels = project.labels()
    assert list(labels["sample_id"]) == [task.sample_id]
    assert list(labels["label"]) == ["dog"]
    assert list(labels["annotator"]) == ["ana"]
    # The next sample is on screen, and the status counts the label.
    assert shown_task(at).sample_id != task.sample_id
    assert project.status().n_labeled == 1


def test_undo_brings_the_sample_back(app_env: Workspace, project: Project) -> None:
    at = signed_in("ana")
    first = shown_task(at)
    at.button(key=label_page.class_button_key(0)).click().run()
    second = shown_task(at)
    at.button(key=label_page.class_button_key(2)).click().run()
    assert len(project.labels()) == 2
    at.button(key="label_undo").click().run()
    assert not at.exception, at.exception
    # The last label is withdrawn and its sample is on screen again; the first label stays.
    assert shown_task(at).sample_id == second.sample_id
    assert list(project.labels()["sample_id"]) == [first.sample_id]
    assert "Label withdrawn" in at.info[0].value
    # Labeling it again stores the new label.
    at.button(key=label_page.class_button_key(1)).click().run()
    labels = project.labels().set_index("sample_id")["label"].to_dict()
    assert labels == {first.sample_id: "cat", second.sample_id: "dog"}


def test_undo_with_nothing_to_undo_says_so(app_env: Workspace, project: Project) -> None:
    at = signed_in("ana")
    at.button(key="label_undo").click().run()
    assert not at.exception
    assert at.info[0].value == "Nothing to undo yet."


def test_skip_moves_on_without_a_label(app_env: Workspace, project: Project) -> None:
    at = signed_in("ana")
    first = shown_task(at)
    at.button(key="label_skip").click().run()
    assert shown_task(at).sample_id != first.sample_id
    assert project.labels().empty


def test_recent_label_edit_relabels(app_env: Workspace, project: Project) -> None:
    at = signed_in("ana")
    task = shown_task(at)
    at.button(key=label_page.class_button_key(0)).click().run()
    records = project.recent_labels("ana")
    assert [r.sample_id for r in records] == [task.sample_id]
    # What the table's on_change hands over when row 0's label is changed to "bird".
    changed = label_page.apply_recent_edits(project, "ana", records, {0: {"label": "bird"}})
    assert changed == 1
    assert project.labels().set_index("sample_id")["label"][task.sample_id] == "bird"
    assert label_page.apply_recent_edits(project, "ana", records, {5: {"label": "cat"}}) == 0


def test_two_annotators_get_different_samples(app_env: Workspace, project: Project) -> None:
    ana, bo = signed_in("ana"), signed_in("bo")
    assert shown_task(ana).sample_id != shown_task(bo).sample_id
    ana.button(key=label_page.class_button_key(0)).click().run()
    bo.button(key=label_page.class_button_key(1)).click().run()
    assert sorted(project.labels()["annotator"]) == ["ana", "bo"]


def test_exhausted_pool_says_so(app_env: Workspace, project: Project) -> None:
    for _ in range(30):
        task = project.next_task("bulk")
        project.submit(task.id, label="cat", annotator="bulk")
    at = signed_in("ana")
    assert not at.exception
    texts = [element.value for element in at.success]
    assert any("pool is exhausted" in text for text in texts)
    assert any("Nothing left to label" in text for text in texts)


def test_why_panel_and_grid_prefill_after_a_round(
    app_env: Workspace, project: Project, tmp_path: Path
) -> None:
    project.update_settings(learner="cnn", strategy="bald")  # a round without embeddings
    for _ in range(12):
        task = project.next_task("seed")
        project.submit(task.id, label=CLASSES[task.sample_id % 3], annotator="seed")
    project.request_round(requested_by="test")
    assert run_one(app_env, project) == "succeeded"
    at = signed_in("ana")
    task = shown_task(at)
    assert task.strategy == "bald" and task.rank == 1
    metrics = {metric.label: metric.value for metric in at.metric}
    assert float(metrics["Mutual information"]) == pytest.approx(
        task.scores["mutual_information"], abs=1e-3
    )
    assert any("Members' top class" in m.value for m in at.markdown)
    # The grid's cells start undecided, the ensemble's prediction offered as a suggestion.
    at.switch_page(f"{PAGES}/grid.py").run()
    assert not at.exception, at.exception
    tasks = at.session_state["grid_tasks"][2]
    for task in tasks:
        expected = grid_page.predicted_label(task, CLASSES)
        assert expected is not None
        assert at.selectbox(key=grid_page.cell_key(task)).value is None
        assert at.checkbox(key=grid_page.accept_key(task)).label == f"Accept: {expected}"


# ------------------------------------------------------------------ grid


def test_grid_submit_stores_every_corrected_label(app_env: Workspace, project: Project) -> None:
    at = signed_in("ana", page="grid.py")
    tasks = at.session_state["grid_tasks"][2]
    assert len(tasks) == 12
    assert len({task.sample_id for task in tasks}) == 12
    chosen = {task.sample_id: CLASSES[index % 3] for index, task in enumerate(tasks)}
    for task in tasks:
        at.selectbox(key=grid_page.cell_key(task)).set_value(chosen[task.sample_id])
    at.button(key="grid_submit").click().run()
    assert not at.exception, at.exception
    stored = project.labels().set_index("sample_id")["label"].to_dict()
    assert stored == chosen
    assert "Stored 12 labels." in at.success[0].value
    # A fresh page of other samples follows.
    following = at.session_state["grid_tasks"][2]
    assert not {task.sample_id for task in following} & set(chosen)


def test_grid_blank_cells_go_back_to_the_queue(app_env: Workspace, project: Project) -> None:
    at = signed_in("ana", page="grid.py")
    tasks = at.session_state["grid_tasks"][2]
    at.selectbox(key=grid_page.cell_key(tasks[0])).set_value("bird")
    at.button(key="grid_submit").click().run()
    assert list(project.labels()["sample_id"]) == [tasks[0].sample_id]
    assert "11 not decided went back to the queue" in at.success[0].value
    # Released, not skipped, but not straight back to the same annotator: the next page is
    # other samples, and the undecided ones are open for the next annotator.
    following = {task.sample_id for task in at.session_state["grid_tasks"][2]}
    assert not following & {task.sample_id for task in tasks}
    other = {task.sample_id for task in project.next_tasks("bo", count=11)}
    assert other == {task.sample_id for task in tasks[1:]}


# ------------------------------------------------------------------ project setup


def test_create_project_and_switch(app_env: Workspace) -> None:
    at = new_app().run()
    at.switch_page(f"{PAGES}/setup.py").run()
    at.text_input(key="new_project_name").input("birds")
    at.text_area(key="new_project_classes").input("owl\n<b>fox</b>\nwren")
    at.button(key="create_project").click().run()
    assert not at.exception, at.exception
    assert app_env.project("birds").classes == ["owl", "<b>fox</b>", "wren"]
    assert at.selectbox(key="project_picker").value == "birds"
    assert "Created project birds (3 classes)" in at.success[0].value
    # A bad request is explained in words.
    at.text_input(key="new_project_name").input("birds")
    at.text_area(key="new_project_classes").input("a\nb")
    at.button(key="create_project").click().run()
    assert "already exists" in at.error[0].value
    # Switching back through the sidebar.
    at.selectbox(key="project_picker").select("tiny").run()
    assert at.session_state["project_name"] == "tiny"


def test_import_folder_reports_rejected_files(
    app_env: Workspace, project: Project, tmp_path: Path
) -> None:
    folder = tmp_path / "more"
    write_images(folder, 3, start=100)
    (folder / "a.png").write_bytes(b"not an image at all")
    (folder / "img00100-copy.png").write_bytes(png_bytes(100))
    at = new_app().run()
    at.switch_page(f"{PAGES}/setup.py").run()
    at.text_input(key="import_folder_path").input(str(folder))
    at.button(key="import_folder").click().run()
    assert not at.exception, at.exception
    assert project.status().n_samples == 33
    summary = " ".join(w.value for w in at.warning)
    assert "3 imported, 1 duplicates skipped, 1 rejected." in summary
    table = rejected_table(at)
    assert list(table["file"].map(lambda path: Path(path).name)) == ["a.png"]
    # A folder that does not exist is one plain sentence, not a traceback.
    at.text_input(key="import_folder_path").input(str(tmp_path / "nowhere"))
    at.button(key="import_folder").click().run()
    assert not at.exception
    assert at.error and "Traceback" not in at.error[0].value


def test_import_zip_upload(app_env: Workspace, project: Project) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(4):
            archive.writestr(f"z{index}.png", png_bytes(500 + index))
        archive.writestr("notes.png", b"hello")
    at = new_app().run()
    at.switch_page(f"{PAGES}/setup.py").run()
    at.file_uploader(key="import_zip_file").upload("pack.zip", buffer.getvalue(), "application/zip")
    at.run()
    at.button(key="import_zip").click().run()
    assert not at.exception, at.exception
    assert project.status().n_samples == 34
    table = rejected_table(at)
    assert len(table) == 1 and "notes.png" in table["file"][0]


def test_choosing_features_and_learner_saves_them_and_computes_new_features(
    app_env: Workspace, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Workspace] = []
    monkeypatch.setattr(rounds, "ensure_worker", lambda ws, **_: started.append(ws) or True)
    at = new_app().run()
    at.switch_page(f"{PAGES}/setup.py").run()
    at.selectbox(key=setup_page.setting_key(project, "learner")).select("embedding")
    at.selectbox(key=setup_page.setting_key(project, "backbone")).select("ssl")
    at.number_input(key=setup_page.setting_key(project, "ssl_epochs")).set_value(3)
    at.button(key=setup_page.setting_key(project, "save")).click().run()
    assert not at.exception, at.exception
    settings = project.settings
    assert (settings.learner, settings.backbone, settings.ssl_epochs) == ("embedding", "ssl", 3)
    # a job is queued (the import's, not yet run, now with these settings) and a worker started
    latest = project.representation_status().latest
    assert latest is not None and latest.status == "queued"
    assert started, "new features need a worker"
    assert "new features are being computed" in " ".join(s.value for s in at.success)
    # A torchvision backbone without its weights file is refused, and nothing changes.
    at.selectbox(key=setup_page.setting_key(project, "backbone")).select("torchvision")
    at.text_input(key=setup_page.setting_key(project, "architecture")).input("resnet18")
    at.button(key=setup_page.setting_key(project, "save")).click().run()
    assert "backbone_weights" in " ".join(e.value for e in at.error)
    assert project.settings.backbone == "ssl"


def test_settings_and_retrain_now(
    app_env: Workspace, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Workspace] = []
    # The worker itself is tested with the rounds; here it must not train in the background.
    monkeypatch.setattr(rounds, "ensure_worker", lambda ws, **_: started.append(ws) or True)
    # A round needs labels of two classes.
    for label in ("cat", "dog"):
        task = project.next_task("seed")
        project.submit(task.id, label=label, annotator="seed")
    at = new_app().run()
    at.switch_page(f"{PAGES}/setup.py").run()
    at.selectbox(key=setup_page.setting_key(project, "strategy")).select("entropy")
    at.number_input(key=setup_page.setting_key(project, "members")).set_value(3)
    at.number_input(key=setup_page.setting_key(project, "retrain_every")).set_value(7)
    at.button(key=setup_page.setting_key(project, "save")).click().run()
    assert not at.exception, at.exception
    settings = project.settings
    assert (settings.strategy, settings.members, settings.retrain_every) == ("entropy", 3, 7)
    at.button(key="retrain_now").click().run()
    assert not at.exception, at.exception
    active = project.active_round()
    assert active is not None and active.status == "queued" and active.strategy == "entropy"
    assert started, "retrain now must make sure a worker runs"
    assert at.button(key="retrain_now").disabled
    at.button(key="cancel_round").click().run()
    assert not at.exception


def test_failed_round_is_explained_and_labeling_continues(
    app_env: Workspace, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rounds, "ensure_worker", lambda ws, **_: False)
    # The round is queued with labels of two classes, which are undone before it starts: it
    # cannot train and fails with a reason.
    for label in ("cat", "dog"):
        task = project.next_task("seed")
        project.submit(task.id, label=label, annotator="seed")
    info = project.request_round()
    project.undo("seed")
    project.undo("seed")
    assert run_one(app_env, project) == "failed"
    at = signed_in("ana")
    warnings = [w.value for w in at.warning]
    assert any(f"Round {info.id} failed" in text for text in warnings), warnings
    at.button(key=label_page.class_button_key(0)).click().run()
    assert len(project.labels()) == 1


# ------------------------------------------------------------------ helpers


def test_markdown_escaping() -> None:
    assert md("<b>*x*</b>") == r"&lt;b&gt;\*x\*&lt;/b&gt;"
    assert md("[a](javascript:x)") == r"\[a\]\(javascript\:x\)"


def test_shortcut_keys() -> None:
    assert label_page.shortcut_keys([str(d) for d in range(10)]) == list("0123456789")
    assert label_page.shortcut_keys(["cat", "dog"]) == ["1", "2"]
    many = [f"c{i}" for i in range(12)]
    assert label_page.shortcut_keys(many) == [*"1234567890", None, None]


def test_ranking_badge() -> None:
    from activelearn import ProjectStatus

    def status(round_id: int | None, since: int) -> ProjectStatus:
        return ProjectStatus(10, 10, 5, 5, 0, 0, since, round_id, False)

    assert ranking_badge(status(None, 3))[0] == "no ranking yet: cold start"
    assert ranking_badge(status(2, 1)) == ("ranking is 1 label old", "green")
    assert ranking_badge(status(2, 150)) == ("ranking is 150 labels old", "red")


def test_a_queued_round_always_gets_a_worker(
    app_env: Workspace, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activelearn.ui import state

    started: list[Workspace] = []
    monkeypatch.setattr(rounds, "ensure_worker", lambda ws, **_: started.append(ws) or True)
    project.update_settings(retrain_every=2)
    for count, label in enumerate(CLASSES[:2], start=1):
        task = project.next_task("ana")
        assert task is not None
        label_page.on_label(project, "ana", task.id, label)
        if count == 1:  # nothing queued yet: no worker is started for nothing
            assert started == []
    # The second label queued an automatic round, and the label callback started a worker.
    active = project.active_round()
    assert active is not None and active.status == "queued"
    assert started and started[-1] is project.workspace

    def broken(ws: Workspace, **_: object) -> bool:
        raise OSError("no room to fork")

    monkeypatch.setattr(rounds, "ensure_worker", broken)
    problem = state.kick_worker(project.workspace)
    assert problem is not None and "no room to fork" in problem and "activelearn worker" in problem


def test_not_a_valid_sample_takes_it_out_with_its_reason(
    app_env: Workspace, project: Project
) -> None:
    at = signed_in("ana")
    first = shown_task(at)
    at.text_input(key=label_page.REASON_KEY).input("blank scan").run()
    at.button(key="label_reject").click().run()
    assert not at.exception, at.exception
    assert shown_task(at).sample_id != first.sample_id
    assert any("not a valid sample" in str(i.value) for i in at.info)
    frame = project.rejected()
    assert list(frame["sample_id"]) == [first.sample_id]
    assert list(frame["reason"]) == ["blank scan"] and list(frame["annotator"]) == ["ana"]
    assert at.text_input(key=label_page.REASON_KEY).value == ""  # the next one starts empty
    assert project.labels().empty and project.status().n_rejected == 1


def test_an_import_starts_the_worker_for_the_representation_stage(
    app_env: Workspace, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Workspace] = []
    monkeypatch.setattr(rounds, "ensure_worker", lambda ws, **_: started.append(ws) or True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(3):
            archive.writestr(f"k{index}.png", png_bytes(700 + index))
    at = new_app().run()
    at.switch_page(f"{PAGES}/setup.py").run()
    at.file_uploader(key="import_zip_file").upload("more.zip", buffer.getvalue(), "application/zip")
    at.run()
    at.button(key="import_zip").click().run()
    assert not at.exception, at.exception
    assert project.representation_status().latest.status == "queued"
    assert len(started) == 1  # a worker is asked for once the import queued the stage
