"""Roles enforced in the service layer, password log-in with throttling, sessions, audit log."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from activelearn import NotAllowed, Workspace
from activelearn.errors import InvalidAnnotator, LoginFailed, LoginThrottled
from activelearn.services import access, export
from activelearn.services.dashboard import send_back_for_review
from activelearn.services.settings import ProjectSettings
from tests.conftest import write_images

PASSWORD = "correct horse battery"


def _project_with_images(ws: Workspace, tmp_path: Path, count: int = 6):
    project = ws.create_project("p", ["a", "b"])
    write_images(tmp_path / "imgs", count)
    project.import_images(tmp_path / "imgs")
    return project


def test_open_mode_is_todays_behaviour(workspace: Workspace, tmp_path: Path) -> None:
    """No lead: a typed name may do everything, like the local operator."""
    ana = workspace.as_user("ana")
    assert access.open_mode(workspace)
    assert ana.role() == "lead"
    project = ana.create_project("p", ["a", "b"])
    write_images(tmp_path / "imgs", 3)
    assert len(project.import_images(tmp_path / "imgs").accepted) == 3
    project.update_settings(retrain_every=0)
    task = project.next_task("bo")  # in open mode anyone may label under any name
    assert task is not None
    project.submit(task.id, "a", annotator="bo")
    assert export.labels_csv_bytes(project).count(b"\n") == 2


def test_annotator_may_only_label_as_themselves(workspace: Workspace, tmp_path: Path) -> None:
    project = _project_with_images(workspace, tmp_path)
    workspace.set_role("lena", "lead")
    workspace.set_role("ana", "annotator")
    assert not access.open_mode(workspace)
    assert workspace.roles() == {"lena": "lead", "ana": "annotator"}
    p = workspace.as_user("ana").project("p")
    task = p.next_task("ana")
    assert task is not None
    p.submit(task.id, "a", annotator="ana")
    p.undo("ana")
    task = p.next_task("ana")
    p.submit(task.id, "b", annotator="ana")
    p.relabel(task.sample_id, "a", annotator="ana")  # her own label: fine
    skip = p.next_task("ana")
    p.skip(skip.id, annotator="ana")

    refused = {
        "create a project": lambda: p.workspace.create_project("q", ["x", "y"]),
        "import": lambda: p.import_images(tmp_path / "imgs"),
        "manifest": lambda: p.import_manifest(tmp_path / "none.csv"),
        "zip upload": lambda: p.import_zip(b"PK\x05\x06" + b"\0" * 18),
        "settings": lambda: p.update_settings(retrain_every=5),
        "classes": lambda: p.add_classes(["c"]),
        "round": lambda: p.request_round(),
        "cancel": lambda: p.cancel_round(),
        "export csv": lambda: export.labels_csv_bytes(p),
        "export folder": lambda: export.write_image_folder(p, tmp_path / "out"),
        "send back": lambda: send_back_for_review(p, task.sample_id, by="ana"),
        "label as someone else": lambda: p.next_task("bo"),
        "correct someone else": lambda: p.relabel(task.sample_id, "b", annotator="lena"),
        "roles": lambda: p.workspace.set_role("ana", "lead"),
        "audit log": lambda: p.workspace.audit_log(),
    }
    for what, action in refused.items():
        with pytest.raises(NotAllowed) as caught:
            action()
        assert "lead" in str(caught.value), what
    assert not (tmp_path / "out").exists()
    assert project.settings.retrain_every == ProjectSettings().retrain_every  # unchanged
    assert [pr.name for pr in workspace.projects()] == ["p"]
    assert workspace.roles()["ana"] == "annotator"


def test_unregistered_and_anonymous_users_may_do_nothing(workspace: Workspace, tmp_path) -> None:
    _project_with_images(workspace, tmp_path)
    workspace.set_role("lena", "lead")
    for user in ("mallory", access.ANONYMOUS):
        p = workspace.as_user(user).project("p")
        with pytest.raises(NotAllowed):
            p.next_task("mallory")
        with pytest.raises(NotAllowed):
            p.update_settings(members=2)


def test_lead_actions_are_audited(workspace: Workspace, tmp_path: Path) -> None:
    workspace.set_role("lena", "lead")
    workspace.set_role("ana", "annotator")
    lead = workspace.as_user("lena")
    project = _project_with_images(lead, tmp_path)
    project.update_settings(retrain_every=0, members=2, audit_share=0.0)  # pool labels only
    ana = workspace.as_user("ana").project("p")
    task = ana.next_task("ana")
    ana.submit(task.id, "a", annotator="ana")
    project.relabel(task.sample_id, "b", annotator="ana")  # a lead corrects ana's label
    labels = workspace.project("p").labels().set_index("sample_id")
    assert labels.loc[task.sample_id, "label"] == "b"
    for label in ("a", "b"):  # a round needs labels of two classes
        other = ana.next_task("ana")
        ana.submit(other.id, label, annotator="ana")
    send_back_for_review(project, task.sample_id, by="lena")
    export.labels_csv_bytes(project)
    export.write_labels(project, tmp_path / "labels")  # csv + jsonl: one entry
    info = project.request_round()
    project.cancel_round(info.id)
    lead.set_role("bo", "annotator")

    log = lead.audit_log()
    assert list(log.columns) == access.AUDIT_COLUMNS
    actions = list(reversed(log["action"].tolist()))
    assert actions == [
        "set role",  # lena, by the local operator
        "set role",
        "create project",
        "import",
        "change settings",
        "correct label",
        "send back for review",
        "export",
        "export",
        "request round",
        "cancel round",
        "set role",
    ]
    actors = list(reversed(log["actor"].tolist()))
    assert actors[:2] == ["local", "local"] and set(actors[2:]) == {"lena"}
    imported = log[log["action"] == "import"].iloc[0]
    assert '"accepted": 6' in imported["detail"] and imported["project"] == "p"
    csv = access.audit_csv_bytes(lead).decode()
    assert csv.splitlines()[0] == "at,actor,action,project,detail"
    assert len(csv.splitlines()) == 1 + len(log)


def test_refused_actions_are_not_audited(workspace: Workspace, tmp_path: Path) -> None:
    _project_with_images(workspace, tmp_path)
    workspace.set_role("lena", "lead")
    workspace.set_role("ana", "annotator")
    before = len(workspace.audit_log())
    with pytest.raises(NotAllowed):
        workspace.as_user("ana").project("p").update_settings(members=3)
    assert len(workspace.audit_log()) == before


def test_last_lead_cannot_be_removed_from_the_browser(workspace: Workspace) -> None:
    workspace.set_role("lena", "lead")
    lena = workspace.as_user("lena")
    with pytest.raises(NotAllowed, match="last lead"):
        lena.remove_user("lena")
    with pytest.raises(NotAllowed, match="last lead"):
        lena.set_role("lena", "annotator")
    lena.set_role("max", "lead")
    assert lena.remove_user("lena")
    assert workspace.remove_user("max")  # the local operator may: back to open mode
    assert access.open_mode(workspace)


def test_unknown_role_is_refused(workspace: Workspace) -> None:
    with pytest.raises(NotAllowed, match="unknown role"):
        workspace.set_role("ana", "admin")


# ---------------------------------------------------------------- log-in


def test_password_login_and_session(workspace: Workspace) -> None:
    workspace.set_role("ana", "annotator")
    workspace.set_password("ana", PASSWORD)
    token = access.login(workspace, "ana", PASSWORD)
    assert access.session_user(workspace, token) == "ana"
    assert access.session_user(workspace, token + "x") is None
    later = access.utcnow() + timedelta(hours=access.DEFAULT_SESSION_HOURS, minutes=1)
    assert access.session_user(workspace, token, now=later) is None  # expired
    access.logout(workspace, token)
    assert access.session_user(workspace, token) is None


def test_password_change_and_removal_end_sessions(workspace: Workspace) -> None:
    workspace.set_role("ana", "annotator")
    workspace.set_password("ana", PASSWORD)
    token = access.login(workspace, "ana", PASSWORD)
    workspace.set_password("ana", "another password")
    assert access.session_user(workspace, token) is None
    token = access.login(workspace, "ana", "another password")
    workspace.remove_user("ana")
    assert access.session_user(workspace, token) is None
    with pytest.raises(LoginFailed):
        access.login(workspace, "ana", "another password")


def test_short_password_and_password_for_someone_else(workspace: Workspace) -> None:
    workspace.set_role("lena", "lead")
    workspace.set_role("ana", "annotator")
    with pytest.raises(InvalidAnnotator, match="at least 8"):
        workspace.set_password("ana", "short")
    ana = workspace.as_user("ana")
    ana.set_password("ana", PASSWORD)  # her own
    with pytest.raises(NotAllowed):
        ana.set_password("lena", PASSWORD)


def test_wrong_password_and_unknown_name_give_one_message(workspace: Workspace) -> None:
    workspace.set_role("ana", "annotator")
    workspace.set_password("ana", PASSWORD)
    messages = set()
    for name, password in (("ana", "wrong password"), ("nobody", PASSWORD), ("ana", "")):
        with pytest.raises(LoginFailed) as caught:
            access.login(workspace, name, password)
        messages.add(str(caught.value))
    assert messages == {"Wrong name or password."}


def test_brute_force_is_throttled(workspace: Workspace) -> None:
    workspace.set_role("ana", "annotator")
    workspace.set_password("ana", PASSWORD)
    now = access.utcnow()
    for attempt in range(access.FREE_ATTEMPTS):
        with pytest.raises(LoginFailed) as caught:
            access.login(workspace, "ana", f"guess {attempt}", now=now)
        assert not isinstance(caught.value, LoginThrottled)
    # Locked now: even the right password is refused, without being checked.
    with pytest.raises(LoginThrottled, match=r"try again in 3[01] seconds"):
        access.login(workspace, "ana", PASSWORD, now=now + timedelta(seconds=1))
    # After the lock, one more wrong guess doubles it.
    after = now + timedelta(seconds=access.FIRST_LOCK_SECONDS + 1)
    with pytest.raises(LoginFailed):
        access.login(workspace, "ana", "guess 6", now=after)
    with pytest.raises(LoginThrottled):
        access.login(workspace, "ana", PASSWORD, now=after + timedelta(seconds=45))
    # Once the doubled lock (60 s) has passed, the right password works and clears the count.
    token = access.login(workspace, "ana", PASSWORD, now=after + timedelta(seconds=61))
    assert access.session_user(workspace, token) == "ana"
    with pytest.raises(LoginFailed) as caught:
        access.login(workspace, "ana", "wrong again", now=after + timedelta(seconds=62))
    assert not isinstance(caught.value, LoginThrottled)


def test_unknown_names_are_throttled_too(workspace: Workspace) -> None:
    now = access.utcnow()
    for _ in range(access.FREE_ATTEMPTS):
        with pytest.raises(LoginFailed):
            access.login(workspace, "ghost", "x" * 8, now=now)
    with pytest.raises(LoginThrottled):
        access.login(workspace, "ghost", "x" * 8, now=now)


def test_one_client_trying_many_names_is_throttled(workspace: Workspace) -> None:
    workspace.set_role("ana", "annotator")
    workspace.set_password("ana", PASSWORD)
    now = access.utcnow()
    for index in range(access.FREE_CLIENT_ATTEMPTS):
        with pytest.raises(LoginFailed) as caught:
            access.login(workspace, f"name{index}", PASSWORD, client="10.0.0.9", now=now)
        assert not isinstance(caught.value, LoginThrottled)
    with pytest.raises(LoginThrottled, match="from this address"):
        access.login(workspace, "ana", PASSWORD, client="10.0.0.9", now=now)
    # Another client is not affected, and a control character cannot name a client's row.
    assert access.login(workspace, "ana", PASSWORD, client="10.0.0.10", now=now)
    with pytest.raises(LoginFailed):
        access.login(workspace, access.CLIENT_KEY + "10.0.0.10", PASSWORD, now=now)


def test_lock_grows_and_is_capped() -> None:
    assert [access._lock_seconds(n) for n in (1, 4, 5, 6, 7)] == [0, 0, 30, 60, 120]
    assert access._lock_seconds(40) == access.MAX_LOCK_SECONDS


def test_open_mode_session_remembers_a_typed_name_until_a_lead_exists(
    workspace: Workspace,
) -> None:
    token = access.open_session(workspace, "ana")
    assert access.session_user(workspace, token) == "ana"
    workspace.set_role("lena", "lead")
    assert access.session_user(workspace, token) is None
    with pytest.raises(NotAllowed):
        access.open_session(workspace, "ana")


def test_tokens_are_stored_hashed(workspace: Workspace) -> None:
    from sqlalchemy import text

    workspace.set_role("ana", "annotator")
    workspace.set_password("ana", PASSWORD)
    token = access.login(workspace, "ana", PASSWORD)
    with workspace.engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash FROM login_sessions")).scalars().all()
        hashes = connection.execute(text("SELECT password_hash FROM users")).scalars().all()
    assert token not in stored and len(stored) == 1
    assert hashes[0].startswith("$argon2id$") and PASSWORD not in hashes[0]


def test_audit_csv_cells_never_run_as_formulas(workspace: Workspace) -> None:
    workspace.as_user("=HYPERLINK(1)").set_role("@lead", "lead")  # open mode: anyone may
    text = access.audit_csv_bytes(workspace).decode()
    assert "'=HYPERLINK(1)" in text
    assert "\n=" not in text and ",=" not in text and ",@" not in text


def test_only_a_lead_answers_or_corrects_for_someone_else(
    workspace: Workspace, tmp_path: Path
) -> None:
    """Issue 15 x 13: a task is answered by whoever holds it, or by a registered lead; on a team
    server an annotator corrects only her own labels."""
    from activelearn.errors import TaskNotCurrent

    _project_with_images(workspace, tmp_path).update_settings(retrain_every=0)
    workspace.set_role("lena", "lead")
    workspace.set_role("ana", "annotator")
    workspace.set_role("eve", "annotator")
    ana = workspace.as_user("ana").project("p")
    eve = workspace.as_user("eve").project("p")
    lena = workspace.as_user("lena").project("p")

    held = ana.next_task("ana")
    with pytest.raises(TaskNotCurrent, match="held by ana"):
        eve.submit(held.id, "b", annotator="eve")
    lena.submit(held.id, "b", annotator="lena")  # a lead may answer a task held by someone else
    assert lena.labels().set_index("sample_id").loc[held.sample_id, "label"] == "b"

    mine = eve.next_task("eve")
    eve.submit(mine.id, "a", annotator="eve")
    with pytest.raises(NotAllowed, match="only a lead may correct"):
        ana.relabel(mine.sample_id, "b", annotator="ana")
    lena.relabel(mine.sample_id, "b", annotator="lena")
    labels = lena.labels()
    assert (labels["sample_id"] == mine.sample_id).sum() == 1
    assert labels.set_index("sample_id").loc[mine.sample_id, "label"] == "b"
