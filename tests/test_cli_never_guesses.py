"""The CLI never guesses (issue 15): explicit projects, no silent databases, one-line errors,
exports that never overwrite silently, imports that leave nothing behind on failure."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from activelearn import Workspace, __version__
from activelearn.cli import build_parser, main
from tests.conftest import write_images

REPO = Path(__file__).resolve().parents[1]


def _db(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--data-dir", str(tmp_path / "data")]


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line
    assert "Traceback" not in err
    return err


def _pets(tmp_path: Path, name: str = "pets") -> None:
    write_images(tmp_path / "src" / "cat", 2, prefix=name)
    write_images(tmp_path / "src" / "dog", 2, start=10, prefix=name)
    assert (
        main(
            [
                "import",
                str(tmp_path / "src"),
                "--project",
                name,
                "--classes",
                "cat,dog",
                *_db(tmp_path),
            ]
        )
        == 0
    )


def test_import_without_project_is_refused_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_images(tmp_path / "src", 2)
    assert main(["import", str(tmp_path / "src"), "--classes", "a,b", *_db(tmp_path)]) == 1
    assert "--project is required" in _err(capsys)
    assert not (tmp_path / "cli.db").exists()


def test_project_is_the_only_one_or_must_be_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pets(tmp_path)
    capsys.readouterr()
    assert main(["export", *_db(tmp_path)]) == 0  # the only project
    assert capsys.readouterr().out.count("\n") == 5  # header + 4 labels
    write_images(tmp_path / "more", 2, start=50)
    assert (
        main(
            [
                "import",
                str(tmp_path / "more"),
                "--project",
                "other",
                "--classes",
                "x,y",
                *_db(tmp_path),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["export", *_db(tmp_path)]) == 1
    assert "several projects (pets, other)" in _err(capsys)
    assert main(["settings", *_db(tmp_path)]) == 1
    _err(capsys)


def test_read_commands_refuse_a_missing_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent.db"
    for argv in (
        ["status"],
        ["export", "--project", "p"],
        ["backup", str(tmp_path / "out.db")],
        ["train", "--project", "p"],
        ["settings", "--project", "p"],
    ):
        assert main([*argv, "--db", f"sqlite:///{missing}"]) == 1, argv
        assert f"no database at {missing}" in _err(capsys)
    assert not missing.exists() and not (tmp_path / "out.db").exists()
    # a relative path (three slashes) is reported with where it was looked for
    assert main(["status", "--db", "sqlite:///projects/x.db"]) == 1
    assert "a relative path" in _err(capsys)
    assert main(["status", "--db", str(tmp_path / "plain.db")]) == 1  # not a URL
    assert "not a database URL" in _err(capsys)


def test_workspace_without_url_does_not_create_the_default_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activelearn.errors import NoDatabase

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACTIVELEARN_DB_URL", raising=False)
    monkeypatch.delenv("ACTIVELEARN_DATA_DIR", raising=False)
    with pytest.raises(NoDatabase, match="no database at"):
        Workspace()
    assert not (tmp_path / "data").exists()
    with Workspace(create=True) as ws:  # the app's way: creates it
        assert ws.projects() == []
    assert (tmp_path / "data" / "activelearn.db").is_file()
    Workspace().close()  # now it exists


def test_a_failed_import_leaves_no_project_and_exit_codes_say_if_anything_came_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pets(tmp_path)
    capsys.readouterr()
    assert (
        main(
            [
                "import",
                str(tmp_path / "nonexistent"),
                "--project",
                "newp",
                "--classes",
                "a,b",
                *_db(tmp_path),
            ]
        )
        == 1
    )
    _err(capsys)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not an image")
    assert main(["import", str(junk), "--project", "newp", "--classes", "a,b", *_db(tmp_path)]) == 1
    assert "nothing was imported" in capsys.readouterr().err
    with Workspace(f"sqlite:///{tmp_path / 'cli.db'}") as ws:
        assert [p.name for p in ws.projects()] == ["pets"]
    # re-importing the same files: nothing new, exit 1
    assert main(["import", str(tmp_path / "src"), "--project", "pets", *_db(tmp_path)]) == 1


def test_classes_on_an_existing_project_are_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pets(tmp_path)
    capsys.readouterr()
    write_images(tmp_path / "more", 2, start=70)
    argv = ["import", str(tmp_path / "more"), "--project", "pets", *_db(tmp_path)]
    assert main([*argv, "--classes", "cat,dog,owl"]) == 1
    assert "--classes only names the classes of a new project" in _err(capsys)
    assert main([*argv, "--classes", "cat,dog"]) == 0  # the same classes: fine


def test_exports_refuse_to_overwrite_and_write_folders_fresh_and_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pets(tmp_path)
    args = ["export", "--project", "pets", *_db(tmp_path)]
    out = tmp_path / "labels.csv"
    out.write_text("precious")
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 1
    assert "add --force" in _err(capsys) and out.read_text() == "precious"
    assert main([*args, "--out", str(out), "--force"]) == 0 and "sample_id" in out.read_text()
    capsys.readouterr()
    for bad, message in (
        (tmp_path, "is a folder"),
        (tmp_path / "missing" / "x.csv", "does not exist"),
    ):
        assert main([*args, "--out", str(bad)]) == 1
        assert message in _err(capsys)
    assert main([*args, "--format", "imagefolder", "--out", str(out), "--force"]) == 1
    assert "is a file" in _err(capsys)

    folder = tmp_path / "imagefolder"
    assert main([*args, "--format", "imagefolder", "--out", str(folder)]) == 0
    capsys.readouterr()
    assert main([*args, "--format", "imagefolder", "--out", str(folder)]) == 1
    assert "add --force" in _err(capsys)
    with Workspace(f"sqlite:///{tmp_path / 'cli.db'}") as ws:
        project = ws.project("pets")
        sample = int(project.labels()["sample_id"][0])
        old_label = project.labels()["label"][0]
        new_label = "dog" if old_label == "cat" else "cat"
        project.relabel(sample, new_label, annotator="ana")
        moved = f"{sample}.png"  # exported as <split>/<class>/<sample id>.png
    assert main([*args, "--format", "imagefolder", "--out", str(folder), "--force"]) == 0
    capsys.readouterr()
    # no stale copy in the old class folder
    assert [p.parent.name for p in folder.rglob(moved)] == [new_label]
    assert sum(1 for _ in folder.rglob("*.png")) == 4
    # a source file gone: an error, and the previous export is left as it was
    Path(next((tmp_path / "src" / "cat").iterdir())).unlink()
    assert main([*args, "--format", "imagefolder", "--out", str(folder), "--force"]) == 1
    assert "gone" in _err(capsys)
    assert sum(1 for _ in folder.rglob("*.png")) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_backup_refuses_directories_non_databases_and_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pets(tmp_path)
    capsys.readouterr()
    assert main(["backup", str(tmp_path), *_db(tmp_path)]) == 1
    assert "is a folder" in _err(capsys)
    text = tmp_path / "notes.txt"
    text.write_text("keep me")
    assert main(["backup", str(text), *_db(tmp_path)]) == 1
    assert "add --force" in _err(capsys) and text.read_text() == "keep me"
    assert main(["backup", "--db", f"sqlite:///{text}", str(tmp_path / "b.db")]) == 1
    _err(capsys)  # not a database: one line


def test_settings_show_and_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _pets(tmp_path)
    capsys.readouterr()
    assert main(["settings", "--json", *_db(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["members"] == 5 and shown["channels"] == 1
    assert (
        main(
            [
                "settings",
                "members=2",
                "strategy=entropy",
                "image_size=32",
                "channels=3",
                "augment=yes",
                *_db(tmp_path),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "rebuilds the tensor cache" in captured.err
    assert "members=2" in captured.out and "strategy=entropy" in captured.out
    with Workspace(f"sqlite:///{tmp_path / 'cli.db'}") as ws:
        settings = ws.project("pets").settings
    assert (settings.members, settings.image_size, settings.channels, settings.augment) == (
        2,
        32,
        3,
        True,
    )
    for bad, message in (
        ("members=lots", "members takes a int"),
        ("colour=red", "unknown setting 'colour'"),
        ("members", "key=value"),
        ("strategy=magic", "unknown acquisition strategy"),
    ):
        assert main(["settings", bad, *_db(tmp_path)]) == 1
        assert message in _err(capsys)


def test_usage_errors_are_one_line_with_exit_code_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--format", "pdf"])
    assert exit_info.value.code == 1
    _err(capsys)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and __version__ in capsys.readouterr().out


def test_every_option_has_help_text() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, sub in subparsers.choices.items()
        for action in sub._actions
        if not action.help
        and action.dest != "help"
        and not isinstance(action, argparse._SubParsersAction)  # a group of commands
    ]
    assert missing == []
    db_helps = {
        next(a.help for a in sub._actions if a.dest == "db")
        for sub in subparsers.choices.values()
        if any(a.dest == "db" for a in sub._actions)
    }
    assert len(db_helps) == 1  # every command describes the same default


def test_readme_documents_every_command_and_the_labels_columns() -> None:
    readme = (REPO / "README.md").read_text()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for name in subparsers.choices:
        assert f"activelearn {name}" in readme, name
    assert "labeled_at, split" in readme


def test_a_traceback_only_with_debug(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _pets(tmp_path)
    capsys.readouterr()
    from activelearn import ProjectNotFound

    assert main(["export", "--project", "nope", *_db(tmp_path)]) == 1
    _err(capsys)
    with pytest.raises(ProjectNotFound):
        main(["--debug", "export", "--project", "nope", *_db(tmp_path)])


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 3.0])
def test_sigint_during_train_wait_cancels_the_round(tmp_path: Path, delay: float) -> None:
    from tests.services.test_rounds import make_project

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with Workspace(url, data_dir=tmp_path / "data") as ws:
        make_project(
            ws, tmp_path / "images", settings={"epochs": 1000, "members": 8}
        )  # still running at 3 s
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "activelearn", "train", "--wait", *_db(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    with Workspace(url, data_dir=tmp_path / "data") as ws:
        project = ws.project("tiny")
        while project.last_round() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        last = project.last_round()
    assert process.returncode == 130, err
    assert last is not None and last.status == "cancelled", (last, err)
    assert "Traceback" not in err and err.strip().startswith("error: interrupted")
