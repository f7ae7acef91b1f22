"""activelearn.core knows nothing of the UI, the database or the rest of activelearn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_imports_only_torch_numpy_safetensors() -> None:
    code = (
        "import sys\n"
        "import activelearn.core, activelearn.core.ensemble, activelearn.core.acquisition\n"
        "import activelearn.core.metrics, activelearn.core.scoring, activelearn.core.devices\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'streamlit', 'sqlalchemy', 'db', 'pandas', 'plotly', 'alembic'})\n"
        "ours = [m for m in sys.modules if m.startswith('activelearn.') "
        "and not m.startswith('activelearn.core')]\n"
        "assert not bad and not ours, (bad, ours)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
