"""activelearn.ingest imports only the standard library, numpy and Pillow (and mlxtend for the
demo), never the database, the UI or torch."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import activelearn.ingest

ALLOWED = {"numpy", "PIL", "activelearn"}
DEMO_ONLY = {"mlxtend"}


def imported_roots(source: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_ingest_modules_import_only_what_they_may() -> None:
    package = Path(activelearn.ingest.__file__).parent
    for module in sorted(package.glob("*.py")):
        roots = imported_roots(module) - set(sys.stdlib_module_names)
        allowed = ALLOWED | (DEMO_ONLY if module.name == "demo.py" else set())
        assert roots <= allowed, f"{module.name} imports {sorted(roots - allowed)}"


def test_ingest_imports_stay_inside_ingest() -> None:
    package = Path(activelearn.ingest.__file__).parent
    for module in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("activelearn")
            ):
                assert node.module.startswith("activelearn.ingest"), f"{module.name}: {node.module}"
