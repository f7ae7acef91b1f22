"""The import graph: no cycles (imports inside functions count), few function-level imports,
the import-linter contracts, and no module over 600 lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.architecture.import_graph import ROOT, Edge, cycles, edges, module_files

MAX_MODULE_LINES = 600

# Function-level imports of project modules, each there to keep torch out of an import path
# that must not load it (the UI's, the settings', every `activelearn` command's start-up).
LAZY_IMPORTS_ALLOWED = {
    ("activelearn.cli_rounds", "activelearn.services.worker_loop"),
    ("activelearn.cli_rounds", "activelearn.simulate"),
    ("activelearn.core.learners", "activelearn.core.cnn_learner"),
    ("activelearn.core.learners", "activelearn.core.embedding_fit"),
    ("activelearn.core.strategies", "activelearn.core.acquisition"),
    ("activelearn.core.strategies", "activelearn.core.typicality"),
}


def test_no_import_cycles_among_project_modules() -> None:
    assert cycles(edges()) == []


def test_the_cycle_finder_sees_imports_inside_functions(tmp_path: Path) -> None:
    # A two-module cycle closed only by an import inside a function is still a cycle.
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import b\n")
    b.write_text("def late():\n    import a\n")
    found = edges({"a": a, "b": b})
    assert Edge("b", "a", 2, True, False) in found
    assert cycles(found) == [["a", "b"]]
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n")
    assert cycles(edges({"a": a, "b": b})) == []  # annotations only: never executed


def test_function_level_imports_are_only_the_torch_guards() -> None:
    lazy = {(e.source, e.target) for e in edges() if e.in_function and not e.type_checking}
    assert lazy <= LAZY_IMPORTS_ALLOWED, sorted(lazy - LAZY_IMPORTS_ALLOWED)


def test_no_module_over_600_lines() -> None:
    long = {
        name: n
        for name, path in module_files().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    long.update(
        {
            str(path.relative_to(ROOT)): n
            for path in (ROOT / "app.py",)
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
        }
    )
    assert long == {}


def test_nothing_imports_the_worker_entry_point() -> None:
    assert [e for e in edges() if e.target == "activelearn.worker"] == []


LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


@pytest.mark.skipif(not Path(LINT_IMPORTS).exists(), reason="import-linter is not installed")
def test_import_linter_contracts_are_kept() -> None:
    # This checkout's packages, not an installed copy: grimp reads whatever sys.path finds.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [LINT_IMPORTS], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:]
