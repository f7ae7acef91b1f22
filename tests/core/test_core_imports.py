"""activelearn.core knows nothing of the UI, the database or the rest of activelearn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_core_imports_only_torch_numpy_safetensors() -> None:
    _run(
        "import sys, pkgutil, importlib, activelearn.core\n"
        "for info in pkgutil.iter_modules(activelearn.core.__path__):\n"
        "    importlib.import_module('activelearn.core.' + info.name)\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'streamlit', 'sqlalchemy', 'db', 'pandas', 'plotly', 'alembic'})\n"
        "ours = [m for m in sys.modules if m.startswith('activelearn.') "
        "and not m.startswith('activelearn.core')]\n"
        "assert not bad and not ours, (bad, ours)\n"
    )


def test_registries_and_settings_import_without_torch() -> None:
    # The UI validates settings and lists strategies and learners without loading torch.
    _run(
        "import sys\n"
        "from activelearn.core.strategies import STRATEGIES\n"
        "from activelearn.core.learners import LEARNERS\n"
        "from activelearn.services.settings import ProjectSettings\n"
        "ProjectSettings(strategy='balanced_bald', learner='cnn').validate()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
