"""Import pipeline: scan a source, decode every file, de-duplicate, cache tensors, store rows.

Each batch of files is committed in its own short transaction, so an import that fails half-way
keeps everything imported before the failure, and annotators keep labeling meanwhile.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session

from activelearn.clock import utcnow
from activelearn.errors import ImportFailed
from activelearn.ingest.cache import TensorCache
from activelearn.ingest.decode import DecodedImage, ImageRejected, decode_image
from activelearn.ingest.demo import demo_images
from activelearn.ingest.sources import (
    SourceError,
    SourceItem,
    SourceScan,
    scan_manifest,
    scan_source,
    scan_zip,
)
from activelearn.types import ImportReport
from db import queries
from db.engine import read_session, with_write_retry

if TYPE_CHECKING:
    from activelearn.services.workspace import Project

BATCH_SIZE = 256
IMPORT_ANNOTATOR = "import"
_EXTENSIONS = {
    "PNG": "png",
    "JPEG": "jpg",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "WEBP": "webp",
}


def _printable(path: str) -> str:
    """A path as UTF-8 text: undecodable bytes in file names (surrogates) become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _utf8_safe(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class _Accepted:
    item: SourceItem
    image: DecodedImage
    label: str | None
    split: str
    stored_path: str


class _Report:
    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.duplicates: list[str] = []
        self.rejected: list[tuple[str, str]] = []
        self.classes_added: list[str] = []

    def freeze(self) -> ImportReport:
        return ImportReport(
            accepted=self.accepted,
            duplicates=self.duplicates,
            rejected=self.rejected,
            classes_added=self.classes_added,
        )


def import_source(project: Project, path: str | Path, *, add_classes: bool = False) -> ImportReport:
    """A folder, a CSV manifest or a zip, told apart by content."""
    try:
        scan = scan_source(path)
    except SourceError as error:
        raise ImportFailed(str(error)) from error
    return _run(project, scan, add_classes=add_classes, copy_files=scan.kind == "zip")


def import_manifest(
    project: Project, path: str | Path, *, add_classes: bool = False
) -> ImportReport:
    try:
        scan = scan_manifest(path)
    except SourceError as error:
        raise ImportFailed(str(error)) from error
    return _run(project, scan, add_classes=add_classes, copy_files=False)


def import_zip(
    project: Project,
    data: bytes | str | Path,
    *,
    name: str = "upload.zip",
    add_classes: bool = False,
) -> ImportReport:
    try:
        scan = scan_zip(data, name=name)
    except SourceError as error:
        raise ImportFailed(str(error)) from error
    return _run(project, scan, add_classes=add_classes, copy_files=True)


def import_demo(project: Project) -> ImportReport:
    """The built-in MNIST subset: 4,000 pool digits (gold labels hidden) and 1,000 test digits."""

    def items() -> Iterator[SourceItem]:
        for file_name, data, label, split in demo_images():
            yield SourceItem(path=file_name, data=data, label=label, split=split, error=None)

    scan = SourceScan(kind="demo", classes=[], items=items())
    return _run(project, scan, add_classes=False, copy_files=True, pool_labels_are_gold=True)


def _run(
    project: Project,
    scan: SourceScan,
    *,
    add_classes: bool,
    copy_files: bool,
    pool_labels_are_gold: bool = False,
) -> ImportReport:
    report = _Report()
    if add_classes and scan.classes:
        before = project.classes
        after = project.add_classes(scan.classes)
        report.classes_added = [name for name in after if name not in before]
    settings = project.settings
    classes = set(project.classes)
    cache = TensorCache(
        project.cache_dir, channels=settings.channels, image_size=settings.image_size
    )
    rng = random.Random()
    seen: set[str] = set()
    for batch in _batches(scan.items, BATCH_SIZE):
        accepted: list[_Accepted] = []
        for item in batch:
            outcome = _check(item, classes, settings.image_size, settings.channels)
            if isinstance(outcome, str):
                report.rejected.append((_printable(item.path), outcome))
                continue
            if outcome.sha256 in seen:
                report.duplicates.append(_printable(item.path))
                continue
            seen.add(outcome.sha256)
            accepted.append(
                _Accepted(
                    item=item,
                    image=outcome,
                    label=item.label.strip() if item.label else None,
                    split=item.split or "pool",
                    stored_path=item.path,
                )
            )
        _store(project, accepted, report, cache, rng, copy_files, pool_labels_are_gold)
    return report.freeze()


def _batches(items: Iterable[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    batch: list[SourceItem] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _check(
    item: SourceItem, classes: set[str], image_size: int, channels: int
) -> DecodedImage | str:
    if item.error:
        return item.error
    if item.data is None:
        return "could not be read"
    if item.label is not None and item.label.strip() and item.label.strip() not in classes:
        return f"label {item.label.strip()!r} is not a class of this project"
    try:
        return decode_image(item.data, image_size=image_size, channels=channels)
    except ImageRejected as error:
        return error.reason


def _store(
    project: Project,
    accepted: list[_Accepted],
    report: _Report,
    cache: TensorCache,
    rng: random.Random,
    copy_files: bool,
    pool_labels_are_gold: bool,
) -> None:
    if not accepted:
        return

    with read_session(project.engine) as session:
        existing = queries.existing_hashes(session, project.id, [a.image.sha256 for a in accepted])
    fresh = [a for a in accepted if a.image.sha256 not in existing]
    report.duplicates.extend(
        _printable(a.item.path) for a in accepted if a.image.sha256 in existing
    )
    if not fresh:
        return
    for entry in fresh:
        # A file name that is not valid UTF-8 cannot be stored as text: keep a copy by hash.
        if copy_files or not _utf8_safe(entry.item.path):
            entry.stored_path = str(_store_file(project.files_dir, entry))
    # The tensors go to disk first: a crash between here and the commit leaves an unused shard,
    # never a row that points at missing pixels.
    shard = cache.write_shard(np.stack([a.image.pixels for a in fresh]))

    now = utcnow()
    rows: list[dict[str, Any]] = []
    for index, entry in enumerate(fresh):
        gold = entry.label
        labeled = entry.label is not None and (entry.split != "pool" or not pool_labels_are_gold)
        rows.append(
            {
                "project_id": project.id,
                "path": entry.stored_path,
                "sha256": entry.image.sha256,
                "width": entry.image.width,
                "height": entry.image.height,
                "split": entry.split,
                "gold_label": gold,
                "status": "labeled" if labeled else "open",
                "label": entry.label if labeled else None,
                "skip_count": 0,
                "random_key": rng.random(),
                "cache_shard": shard,
                "cache_index": index,
                "created_at": now,
            }
        )

    late_duplicates: set[str] = set()

    def insert(session: Session) -> None:
        # Checked again inside the write transaction: another import may have added the same file.
        late_duplicates.clear()
        late_duplicates.update(
            queries.existing_hashes(session, project.id, [r["sha256"] for r in rows])
        )
        new_rows = [r for r in rows if r["sha256"] not in late_duplicates]
        queries.insert_samples(session, new_rows)
        needs_annotation = [
            r for r in new_rows if r["status"] == "labeled" and r["split"] == "pool"
        ]
        if needs_annotation:
            ids = queries.sample_ids_by_hash(
                session, project.id, [r["sha256"] for r in needs_annotation]
            )
            for row in needs_annotation:
                queries.add_annotation(
                    session,
                    project_id=project.id,
                    sample_id=ids[row["sha256"]],
                    task_id=None,
                    label=row["label"],
                    annotator=IMPORT_ANNOTATOR,
                    now=now,
                )

    with_write_retry(project.engine, insert)
    for entry in fresh:
        if entry.image.sha256 in late_duplicates:
            report.duplicates.append(_printable(entry.item.path))
        else:
            report.accepted.append(_printable(entry.item.path))


def _store_file(folder: Path, entry: _Accepted) -> Path:
    extension = _EXTENSIONS.get(entry.image.format, "img")
    target = folder / entry.image.sha256[:2] / f"{entry.image.sha256}.{extension}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp")
        assert entry.item.data is not None
        temporary.write_bytes(entry.item.data)
        temporary.replace(target)
    return target.resolve()
