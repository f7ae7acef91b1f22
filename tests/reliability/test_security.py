"""Security promises that can be checked on the source and the shipped configuration."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import tomllib

from activelearn import Workspace
from db.engine import sqlite_backup, sqlite_integrity_check
from tests.conftest import write_images

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [path for folder in ("activelearn", "db") for path in (ROOT / folder).rglob("*.py")] + [
    ROOT / "app.py"
]


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


def test_no_pickle_anywhere() -> None:
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(
                    n.split(".")[0] in {"pickle", "dill", "cloudpickle", "joblib"} for n in names
                ):
                    offenders.append(f"{path}: imports {names}")
        for call in _calls(tree):
            name = _name(call.func)
            keywords = {k.arg: k.value for k in call.keywords}
            if name.endswith("torch.load") or (name == "load" and "weights_only" in keywords):
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    offenders.append(f"{path}:{call.lineno}: torch.load without weights_only=True")
            if "allow_pickle" in keywords:
                value = keywords["allow_pickle"]
                if not (isinstance(value, ast.Constant) and value.value is False):
                    offenders.append(f"{path}:{call.lineno}: allow_pickle is not False")
            if name.endswith("np.load") and "allow_pickle" not in keywords:
                offenders.append(f"{path}:{call.lineno}: np.load without allow_pickle=False")
    assert offenders == []


def test_no_user_text_as_unescaped_html() -> None:
    """unsafe_allow_html is only ever given a constant string (styling), never user text."""
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree):
            flags = [k for k in call.keywords if k.arg == "unsafe_allow_html"]
            if not flags or (isinstance(flags[0].value, ast.Constant) and not flags[0].value.value):
                continue
            if not call.args or not isinstance(call.args[0], ast.Constant):
                offenders.append(f"{path}:{call.lineno}")
    assert offenders == []


def test_shipped_streamlit_config_is_safe() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"].get("enableXsrfProtection", True) is True
    assert 1 <= int(config["server"]["maxUploadSize"]) <= 1024
    assert config["client"]["showErrorDetails"] in (False, "none")
    assert config["browser"]["gatherUsageStats"] is False


def test_backup_while_annotators_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    with Workspace(url, data_dir=tmp_path / "data") as ws:
        project = ws.create_project("p", classes=["a", "b"], settings={"retrain_every": 0})
        project.import_images(write_images(tmp_path / "imgs", 300)[0].parent)
        acknowledged: list[int] = []
        stop = threading.Event()

        def annotate() -> None:
            while not stop.is_set() and (task := project.next_task(annotator="ana")) is not None:
                project.submit(task.id, label="a", annotator="ana")
                acknowledged.append(task.sample_id)

        worker = threading.Thread(target=annotate)
        worker.start()
        while len(acknowledged) < 50 and worker.is_alive():
            time.sleep(0.01)
        snapshot_floor = len(acknowledged)
        sqlite_backup(ws.engine, tmp_path / "backup.db")
        stop.set()
        worker.join()
    with Workspace(f"sqlite:///{tmp_path / 'backup.db'}", data_dir=tmp_path / "data") as copy:
        assert sqlite_integrity_check(copy.engine) == "ok"
        restored = set(copy.project("p").labels()["sample_id"])
    # Every label acknowledged before the backup started is in it.
    assert set(acknowledged[:snapshot_floor]) <= restored
