"""Exports: labels (CSV, JSONL, an ImageFolder-style copy), pool predictions with every
uncertainty score (CSV, Parquet) and the latest checkpoint (safetensors + config).

`*_bytes` returns one file's bytes (download buttons; the CLI writes them to a file);
`write_*` puts files in a folder where an export is several files (labels in both formats, the
ImageFolder copy, the checkpoint). Both build on the same frame or file list, so they agree.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from activelearn.errors import ExportRefused, NothingToExport
from activelearn.score_fields import SCORE_FIELDS
from activelearn.services.access import lead_export
from activelearn.services.rounds import KEPT_ROUND_OUTPUTS
from db import dashboard as dash_queries
from db import queries
from db.engine import read_session

if TYPE_CHECKING:
    from activelearn.services.workspace import Project

LABEL_COLUMNS = [
    "sample_id",
    "path",
    "label",
    "annotator",
    "labeled_at",
    "split",
    "original_name",
]
SCORE_COLUMNS = [*SCORE_FIELDS, "priority"]
HONESTY_COLUMNS = ("ood_score", "label_issue")  # empty where not computed
PROBABILITY_PREFIX = "p_"  # p_<class name>: the ensemble's mean probability of that class
CHECKPOINT_FILES = ("model.safetensors", "config.json")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


# ---------------------------------------------------------------- labels


def labels_frame(project: Project) -> pd.DataFrame:
    """Every live label (one row per annotator and sample), oldest first: LABEL_COLUMNS."""
    frame = project.labels()  # LABEL_COLUMNS, in that order
    frame["labeled_at"] = pd.to_datetime(frame["labeled_at"])
    return frame


@lead_export("labels csv")
def labels_csv_bytes(project: Project) -> bytes:
    return labels_frame(project).to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%f").encode()


@lead_export("labels jsonl")
def labels_jsonl_bytes(project: Project) -> bytes:
    """One JSON object per line; labeled_at as ISO 8601 (UTC, no offset, as stored)."""
    frame = labels_frame(project)
    lines = [
        json.dumps(
            {
                "sample_id": int(row.sample_id),
                "path": row.path,
                "label": row.label,
                "annotator": row.annotator,
                "labeled_at": row.labeled_at.isoformat(),
                "split": row.split,
                "original_name": row.original_name,
            },
            ensure_ascii=False,
        )
        for row in frame.itertuples(index=False)
    ]
    return ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")


def read_labels_csv(data: bytes | str | Path) -> pd.DataFrame:
    """Read back what labels_csv_bytes wrote (class names stay strings, "0" included)."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    # keep_default_na=False: a class or annotator called "NA" or "null" stays that string.
    frame = pd.read_csv(
        source,
        dtype={"path": str, "label": str, "annotator": str, "split": str, "original_name": str},
        keep_default_na=False,
    )
    frame["labeled_at"] = pd.to_datetime(frame["labeled_at"])
    return frame


def read_labels_jsonl(data: bytes) -> pd.DataFrame:
    records = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    frame = pd.DataFrame(records, columns=LABEL_COLUMNS)
    frame["sample_id"] = frame["sample_id"].astype("int64")
    frame["labeled_at"] = pd.to_datetime(frame["labeled_at"])
    return frame


@lead_export("labels csv+jsonl")
def write_labels(project: Project, folder: str | Path) -> list[Path]:
    """labels.csv and labels.jsonl in `folder`."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    csv_path, jsonl_path = target / "labels.csv", target / "labels.jsonl"
    csv_path.write_bytes(labels_csv_bytes(project))
    jsonl_path.write_bytes(labels_jsonl_bytes(project))
    return [csv_path, jsonl_path]


# ---------------------------------------------------------------- ImageFolder copy


@dataclass(frozen=True)
class ImageFolderReport:
    written: int
    missing: tuple[str, ...]  # source files that no longer exist
    class_folders: dict[str, str]  # class name -> folder name


def class_folder_names(classes: list[str]) -> dict[str, str]:
    """A safe, unique folder name per class: class names are user text and may hold '/', '..'
    or characters a file system refuses; the mapping is written next to the images."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for index, name in enumerate(classes):
        folder = _UNSAFE_NAME.sub("_", name).strip(" .") or f"class_{index}"
        if folder.lower() in used:
            folder = f"{folder}_{index}"
        used.add(folder.lower())
        names[name] = folder
    return names


def _image_folder_entries(project: Project) -> tuple[list[tuple[Path, str]], dict[str, str]]:
    """(source file, relative target path) per labeled sample, and the class folder names.

    Layout: <split>/<class folder>/<sample id><suffix>, split "pool" (trained on) or "eval"
    (held out) — torchvision.datasets.ImageFolder reads each split folder as is.
    """
    with read_session(project.engine) as session:
        rows = dash_queries.labeled_samples(session, project.id)
        project_row = queries.get_project_by_id(session, project.id)
        classes = list(project_row.classes) if project_row is not None else []
    folders = class_folder_names(classes)
    entries = []
    for sample_id, path, label, split in rows:
        source = Path(path)
        suffix = source.suffix.lower() if source.suffix.lower() in IMAGE_SUFFIXES else ""
        folder = folders.get(label) or _UNSAFE_NAME.sub("_", label).strip(" .") or "unknown"
        entries.append((source, f"{split}/{folder}/{sample_id}{suffix}"))
    return entries, folders


def _image_folder_manifest(entries: list[tuple[Path, str]], folders: dict[str, str]) -> bytes:
    return json.dumps(
        {"class_folders": folders, "files": {target: str(src) for src, target in entries}},
        indent=2,
        ensure_ascii=False,
    ).encode("utf-8")


@lead_export("imagefolder")
def write_image_folder(project: Project, folder: str | Path) -> ImageFolderReport:
    target = Path(folder)
    entries, folders = _image_folder_entries(project)
    missing: list[str] = []
    written = 0
    for source, relative in entries:
        if not source.is_file():
            missing.append(str(source))
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        written += 1
    target.mkdir(parents=True, exist_ok=True)
    (target / "classes.json").write_bytes(_image_folder_manifest(entries, folders))
    return ImageFolderReport(written=written, missing=tuple(missing), class_folders=folders)


@lead_export("imagefolder zip")
def image_folder_zip_bytes(project: Project) -> bytes:
    """The ImageFolder layout in a ZIP (images stored, not recompressed)."""
    entries, folders = _image_folder_entries(project)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for source, relative in entries:
            if source.is_file():
                archive.write(source, relative)
        archive.writestr("classes.json", _image_folder_manifest(entries, folders))
    return buffer.getvalue()


# ---------------------------------------------------------------- pool predictions


def predictions_frame(project: Project, round_id: int | None = None) -> pd.DataFrame:
    """Every sample the round scored (open and labeled pool samples) with every score.

    Columns: round_id, sample_id, path, split, status, label, rank (empty for samples that were
    labeled at the time), predicted_class (name), SCORE_COLUMNS, p_<class> per class,
    member_predictions (a JSON list of each member's top class index), ood_score (open samples:
    0 to 1, higher = more likely out of distribution; core.ood.OOD_SCORE_MEANING), and for
    labeled samples label_issue (0 to 1, higher = the label is more likely wrong, judged by
    models that never trained on it) and suggested_label.
    """
    with read_session(project.engine) as session:
        if round_id is None:
            round_id = queries.latest_succeeded_round_id(session, project.id)
        if round_id is None:
            raise NothingToExport(f"project {project.name!r} has no finished round yet")
        project_row = queries.get_project_by_id(session, project.id)
        classes = list(project_row.classes) if project_row is not None else []
        rows = dash_queries.scored_rows(session, round_id)
        if not rows and round_id != queries.latest_succeeded_round_id(session, project.id):
            raise NothingToExport(
                f"round {round_id}'s per-sample scores were removed when newer rounds finished "
                f"(the newest {KEPT_ROUND_OUTPUTS} rounds keep theirs): export a newer round"
            )
    base = pd.DataFrame(
        [r[:14] for r in rows],
        columns=[
            "sample_id",
            "path",
            "split",
            "status",
            "label",
            *SCORE_COLUMNS,
            "rank",
            "predicted_index",
        ],
    )
    frame = pd.DataFrame(
        {
            "round_id": pd.Series([round_id] * len(base), dtype="int64"),
            "sample_id": base["sample_id"].astype("int64"),
            "path": base["path"].astype(str),
            "split": base["split"].astype(str),
            "status": base["status"].astype(str),
            "label": base["label"].astype(object),
            "rank": base["rank"].astype("Int64"),
            "predicted_class": [_class(classes, i) for i in base["predicted_index"].astype(int)],
        }
    )
    for column in SCORE_COLUMNS:
        frame[column] = base[column].astype("float64")
    probabilities = [list(r[14]) if r[14] is not None else [] for r in rows]
    for index, name in enumerate(classes):
        frame[f"{PROBABILITY_PREFIX}{name}"] = pd.Series(
            [p[index] if index < len(p) else float("nan") for p in probabilities], dtype="float64"
        )
    frame["member_predictions"] = [
        json.dumps([int(v) for v in r[15]]) if r[15] is not None else "" for r in rows
    ]
    frame["ood_score"] = pd.Series([r[16] for r in rows], dtype="float64")
    frame["label_issue"] = pd.Series([r[17] for r in rows], dtype="float64")
    frame["suggested_label"] = pd.Series(
        ["" if r[18] is None else _class(classes, int(r[18])) for r in rows], dtype=object
    )
    return frame


def _class(classes: list[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else f"class {index}"


@lead_export("predictions csv")
def predictions_csv_bytes(project: Project, round_id: int | None = None) -> bytes:
    return predictions_frame(project, round_id).to_csv(index=False).encode("utf-8")


@lead_export("predictions parquet")
def predictions_parquet_bytes(project: Project, round_id: int | None = None) -> bytes:
    buffer = io.BytesIO()
    predictions_frame(project, round_id).to_parquet(buffer, index=False)
    return buffer.getvalue()


def read_predictions_csv(data: bytes | str | Path) -> pd.DataFrame:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    frame = pd.read_csv(
        source,
        dtype={
            "path": str,
            "split": str,
            "status": str,
            "label": object,
            "predicted_class": str,
            "member_predictions": str,
            "suggested_label": str,
            "rank": "Int64",
        },
        keep_default_na=False,
        na_values={"label": [""], "rank": [""], "ood_score": [""], "label_issue": [""]},
    )
    for column in frame.columns:
        numeric = column in HONESTY_COLUMNS or column in SCORE_COLUMNS
        if numeric or column.startswith(PROBABILITY_PREFIX):
            frame[column] = pd.to_numeric(frame[column])
    return frame


# ---------------------------------------------------------------- checkpoint


def latest_checkpoint(project: Project) -> tuple[int, Path]:
    """(round id, checkpoint folder) of the newest succeeded round that left a checkpoint."""
    with read_session(project.engine) as session:
        rounds = dash_queries.succeeded_rounds(session, project.id)
    for round_id, _n_labels, checkpoint in reversed(rounds):
        if checkpoint and all((Path(checkpoint) / name).is_file() for name in CHECKPOINT_FILES):
            return int(round_id), Path(checkpoint)
    raise NothingToExport(
        f"project {project.name!r} has no checkpoint yet: finish a training round first"
    )


def _checkpoint_extras(project: Project, round_id: int) -> bytes:
    # config.json holds the number of classes, not their names; a model is useless without them.
    return json.dumps(
        {"project": project.name, "round_id": round_id, "classes": project.classes},
        indent=2,
        ensure_ascii=False,
    ).encode("utf-8")


@lead_export("checkpoint")
def write_checkpoint(project: Project, folder: str | Path) -> Path:
    """Copy model.safetensors and config.json (only those: never a pickle) plus classes.json."""
    round_id, source = latest_checkpoint(project)
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    for name in CHECKPOINT_FILES:
        shutil.copyfile(source / name, target / name)
    (target / "classes.json").write_bytes(_checkpoint_extras(project, round_id))
    return target


@lead_export("checkpoint zip")
def checkpoint_zip_bytes(project: Project) -> bytes:
    round_id, source = latest_checkpoint(project)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in CHECKPOINT_FILES:
            archive.write(source / name, name)
        archive.writestr("classes.json", _checkpoint_extras(project, round_id))
    return buffer.getvalue()


# ---------------------------------------------------------------- writing exports safely


def check_file_target(path: str | Path, *, force: bool) -> Path:
    """An export file's path, refused when it is a folder, its folder is missing, or it exists
    (unless force)."""
    target = Path(path)
    if target.is_dir():
        raise ExportRefused(f"{target} is a folder: give a file name for this format")
    if not target.parent.is_dir():
        raise ExportRefused(f"folder {target.parent} does not exist")
    if target.exists() and not force:
        raise ExportRefused(f"{target} exists: add --force to overwrite it")
    return target


def write_file(path: str | Path, data: bytes, *, force: bool) -> Path:
    """Write an export file whole: a temporary file renamed over the target in one step."""
    target = check_file_target(path, force=force)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def write_fresh_folder(folder: str | Path, fill: Callable[[Path], None], *, force: bool) -> Path:
    """Write a folder export fresh and whole: `fill` writes into a new sibling folder, which
    then takes the target's place (an old export is removed only after that). Refuses a target
    that is a file, or an existing non-empty folder without force; nothing is left behind when
    `fill` fails."""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ExportRefused(f"{target} is a file: a folder export needs a folder")
    if not target.parent.is_dir():
        raise ExportRefused(f"folder {target.parent} does not exist")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ExportRefused(f"{target} is not empty: add --force to replace it")
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    os.chmod(fresh, 0o755)  # mkdtemp's 0700 would carry over to the export
    try:
        fill(fresh)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "export")
        os.replace(fresh, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if fresh.exists():
            shutil.rmtree(fresh, ignore_errors=True)
    return target


def export_image_folder(project: Project, folder: str | Path, *, force: bool) -> int:
    """The ImageFolder export, fresh and whole: refused (nothing written) when a labeled
    image's file is gone. Returns the images written."""
    written: list[int] = []

    def fill(fresh: Path) -> None:
        report = write_image_folder(project, fresh)
        if report.missing:
            shown = ", ".join(report.missing[:3])
            more = f" and {len(report.missing) - 3} more" if len(report.missing) > 3 else ""
            raise ExportRefused(
                f"{len(report.missing)} labeled image file(s) are gone ({shown}{more}): "
                "nothing was exported"
            )
        written.append(report.written)

    write_fresh_folder(folder, fill, force=force)
    return written[0]


def export_checkpoint(project: Project, folder: str | Path, *, force: bool) -> Path:
    latest_checkpoint(project)  # raises NothingToExport before anything is touched
    return write_fresh_folder(folder, lambda fresh: write_checkpoint(project, fresh), force=force)
