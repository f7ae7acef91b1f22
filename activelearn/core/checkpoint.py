"""Checkpoint folders: tensors in model.safetensors, everything else in config.json; no pickle.

A checkpoint is a DIRECTORY. `config.json` names the learner that wrote it ("learner", absent
in checkpoints older than the learner registry: those are "cnn") so that
activelearn.core.learner.load_fitted can hand the folder to the right loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def write_checkpoint(
    path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any], *, architecture: str
) -> None:
    """Write `tensors` (CPU) and the JSON-able `meta` into the directory `path`."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    save_file(contiguous, str(directory / WEIGHTS_FILE), metadata={"architecture": architecture})
    meta = {"format_version": FORMAT_VERSION, "architecture": architecture, **meta}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(path: str | Path) -> dict[str, Any]:
    """config.json of a checkpoint directory; FileNotFoundError when it is not one."""
    directory = Path(path)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(
            f"{directory} is not an ensemble checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    return json.loads(config_path.read_text())


def read_checkpoint(
    path: str | Path, *, architecture: str
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors on CPU, meta) of a directory written by `write_checkpoint` for `architecture`."""
    meta = read_meta(path)
    if meta.get("format_version") != FORMAT_VERSION or meta.get("architecture") != architecture:
        raise ValueError(
            f"unsupported checkpoint: format {meta.get('format_version')!r}, "
            f"architecture {meta.get('architecture')!r}"
        )
    return load_file(str(Path(path) / WEIGHTS_FILE)), meta
