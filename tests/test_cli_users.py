"""`activelearn user add|passwd|remove|list` and `activelearn audit` on a real SQLite file."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from activelearn import Workspace
from activelearn.cli import main
from activelearn.services import access
from tests.conftest import write_images


def _db(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--data-dir", str(tmp_path / "data")]


def _run(args: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(args)


def test_user_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _db(tmp_path)
    add_lead = ["user", "add", "lena", "--role", "lead", "--password-stdin", *db]
    assert _run(add_lead, monkeypatch, "lead password\n") == 0
    assert "Open mode is over" in capsys.readouterr().out
    add = ["user", "add", "ana", "--role", "annotator", "--password-stdin", *db]
    assert _run(add, monkeypatch, "anas password\n") == 0
    assert (
        _run(
            ["user", "add", "oidc@example.com", "--role", "annotator", "--no-password", *db],
            monkeypatch,
        )
        == 0
    )
    capsys.readouterr()
    assert _run(["user", "list", *db], monkeypatch) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == [
        "lena\tlead\tpassword",
        "ana\tannotator\tpassword",
        "oidc@example.com\tannotator\tno password (OIDC only)",
    ]
    url = db[1]
    with Workspace(url, data_dir=tmp_path / "data") as ws:
        assert access.session_user(ws, access.login(ws, "ana", "anas password")) == "ana"
    assert (
        _run(["user", "passwd", "ana", "--password-stdin", *db], monkeypatch, "new pass 123\n") == 0
    )
    with Workspace(url, data_dir=tmp_path / "data") as ws:
        assert access.login(ws, "ana", "new pass 123")
    # Too short, unknown role: refused with a message, nothing changed.
    assert (
        _run(
            ["user", "add", "bo", "--role", "annotator", "--password-stdin", *db],
            monkeypatch,
            "short\n",
        )
        == 1
    )
    assert "at least 8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(["user", "add", "bo", "--role", "admin", "--no-password", *db], monkeypatch)
    assert _run(["user", "remove", "nobody", *db], monkeypatch) == 1
    assert _run(["user", "remove", "lena", *db], monkeypatch) == 0
    assert "open mode again" in capsys.readouterr().out


def test_import_and_audit_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI is the local operator: it imports from anywhere, and its actions are logged."""
    db = _db(tmp_path)
    write_images(tmp_path / "anywhere", 2)
    assert _run(["user", "add", "lena", "--role", "lead", "--no-password", *db], monkeypatch) == 0
    assert (
        _run(
            ["import", str(tmp_path / "anywhere"), "--project", "p", "--classes", "a,b", *db],
            monkeypatch,
        )
        == 0
    )
    out = tmp_path / "audit.csv"
    assert _run(["audit", "--out", str(out), *db], monkeypatch) == 0
    log = pd.read_csv(out)
    assert list(log.columns) == access.AUDIT_COLUMNS
    assert set(log["actor"]) == {"local"}
    assert list(log["action"])[::-1] == ["set role", "create project", "import"]
    capsys.readouterr()
    assert _run(["audit", "--project", "p", *db], monkeypatch) == 0
    assert capsys.readouterr().out.count("\n") == 3  # header, create project, import
