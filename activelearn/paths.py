"""The data folder's layout: every path under it is named here and nowhere else.

data/
  activelearn.db                      the default SQLite database
  cache/project-P/                    decoded tensors of project P (ingest.cache)
  checkpoints/project-P/round-R/      a round's saved learner (safetensors + JSON)
  embeddings/project-P/V.npz          sample embeddings of encoder version V (ingest.embeddings)
  embeddings/project-P/V.encoder.safetensors   that version's encoder weights
  worker.pid, worker.log              the background worker's pid file and log
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = Path("data")
DATA_DIR_ENV = "ACTIVELEARN_DATA_DIR"
PID_FILE = "worker.pid"
LOG_FILE = "worker.log"


def resolve_data_dir(data_dir: str | Path | None, *, db_file: Path | None = None) -> Path:
    """The data folder: given, else $ACTIVELEARN_DATA_DIR, else beside the SQLite file, else
    ./data."""
    if data_dir is not None:
        return Path(data_dir)
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        return Path(env_dir)
    return db_file.parent if db_file is not None else DEFAULT_DATA_DIR


def project_cache_dir(data_dir: Path, project_id: int) -> Path:
    """Where a project's decoded tensors live (written by imports, read by rounds)."""
    return Path(data_dir) / "cache" / f"project-{project_id}"


def embeddings_dir(data_dir: Path, project_id: int) -> Path:
    """Where a project's per-sample embeddings live, one file per encoder version (written by
    the representation stage, read by rounds)."""
    return Path(data_dir) / "embeddings" / f"project-{project_id}"


def checkpoints_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "checkpoints"


def checkpoint_dir(data_dir: Path, project_id: int, round_id: int) -> Path:
    """Where round `round_id` of project `project_id` saves its learner."""
    return checkpoints_dir(data_dir) / f"project-{project_id}" / f"round-{round_id}"


def round_checkpoint_dirs(data_dir: Path, round_id: int) -> list[Path]:
    """The checkpoint folders of a round, whatever its project (round ids are unique)."""
    return sorted(checkpoints_dir(data_dir).glob(f"project-*/round-{round_id}"))


def encoder_file(data_dir: Path, project_id: int, version: str) -> Path:
    """The weights of encoder `version` (beside its embeddings; safetensors, never pickle)."""
    return embeddings_dir(data_dir, project_id) / f"{version}.encoder.safetensors"


def pid_file(data_dir: Path) -> Path:
    return Path(data_dir) / PID_FILE


def log_file(data_dir: Path) -> Path:
    return Path(data_dir) / LOG_FILE
