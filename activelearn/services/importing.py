"""Import pipeline: scan a source, decode every file, de-duplicate, cache tensors, store rows.

Each batch of files is committed in its own short transaction, so an import that fails half-way
keeps everything imported before the failure, and annotators keep labeling meanwhile.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session

from activelearn.clock import utcnow
from activelearn.errors import ImportFailed, OutsideImportRoots
from activelearn.ingest import roots as import_roots
from activelearn.ingest.cache import TensorCache
from activelearn.ingest.decode import (
    DecodedImage,
    ImageRejected,
    choose_image_shape,
    decode_image,
)
from activelearn.ingest.demo import demo_images
from activelearn.ingest.sources import (
    ZIP_SIGNATURES,
    SourceError,
    SourceItem,
    SourceScan,
    manifest_targets,
    scan_manifest,
    scan_source,
    scan_zip,
)
from activelearn.services import access, representation
from activelearn.services.settings import ProjectSettings
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


def original_name(path: str, root: str | None) -> str:
    """A file's name as the user knows it: its path inside the zip ("a.zip!bird/b0.jpg" ->
    "bird/b0.jpg") or relative to the imported folder or manifest folder; else the path."""
    if "!" in path and root is None:
        return path.split("!", 1)[1]
    if root is not None:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return path


def _conflict(label: str | None, other_label: str | None, other_name: str) -> str | None:
    """Why a duplicate is a conflict (its label is lost otherwise), or None if it is not."""
    if label is None or label == other_label:
        return None
    if other_label is None:
        return f"same image as {other_name}, unlabeled there; the label {label!r} was not applied"
    return f"same image as {other_name}, labeled {other_label!r} there but {label!r} here"


@dataclass
class _Accepted:
    item: SourceItem
    image: DecodedImage
    label: str | None
    split: str
    stored_path: str
    original_name: str


class _Report:
    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.duplicates: list[str] = []
        self.rejected: list[tuple[str, str]] = []
        self.classes_added: list[str] = []
        self.conflicts: list[tuple[str, str]] = []

    def freeze(self) -> ImportReport:
        return ImportReport(
            accepted=self.accepted,
            duplicates=self.duplicates,
            rejected=self.rejected,
            classes_added=self.classes_added,
            conflicts=self.conflicts,
        )


def import_source(project: Project, path: str | Path, *, add_classes: bool = False) -> ImportReport:
    """A folder, a CSV manifest or a zip, told apart by content (leads only)."""
    return _import_path(project, path, manifest=None, add_classes=add_classes)


def import_manifest(
    project: Project, path: str | Path, *, add_classes: bool = False
) -> ImportReport:
    return _import_path(project, path, manifest=True, add_classes=add_classes)


def _import_path(
    project: Project, path: str | Path, *, manifest: bool | None, add_classes: bool
) -> ImportReport:
    """Confine, scan and import a server path: a manifest when `manifest`, else by content."""
    with access.lead_action(
        project.workspace, "import", "import images", project=project, source=str(path)
    ) as log:
        source = _confined(project, path, manifest=manifest)
        try:
            scan = scan_manifest(source) if manifest else scan_source(source)
        except SourceError as error:
            raise ImportFailed(str(error)) from error
        report = _run(project, scan, add_classes=add_classes, copy_files=scan.kind == "zip")
        log.update(_counts(report, scan.kind))
    return report


def import_zip(
    project: Project,
    data: bytes | str | Path,
    *,
    name: str = "upload.zip",
    add_classes: bool = False,
) -> ImportReport:
    """A zip, given as bytes (an upload: never subject to the import roots) or a path."""
    shown = name if isinstance(data, bytes) else str(data)
    with access.lead_action(
        project.workspace, "import", "import images", project=project, source=shown
    ) as log:
        if not isinstance(data, bytes):
            data = _confined(project, data, manifest=False)
        try:
            scan = scan_zip(data, name=name)
        except SourceError as error:
            raise ImportFailed(str(error)) from error
        report = _run(project, scan, add_classes=add_classes, copy_files=True)
        log.update(_counts(report, "zip"))
    return report


def _counts(report: ImportReport, kind: str) -> dict[str, object]:
    return {
        "kind": kind,
        "accepted": len(report.accepted),
        "duplicates": len(report.duplicates),
        "rejected": len(report.rejected),
    }


def _confined(project: Project, path: str | Path, *, manifest: bool | None) -> str | Path:
    """`path` itself when the workspace has no import roots; otherwise `path` resolved inside
    them, and for a manifest (or a file that is not a folder or zip, which import_source reads
    as one) every file it names checked too, before any of them is opened."""
    roots = project.workspace.import_roots
    if roots is None:
        return path
    try:
        source = import_roots.confine(path, roots)
    except import_roots.OutsideImportRoots as error:
        raise OutsideImportRoots(str(error)) from error
    if manifest is None:
        if source.is_dir():
            return source
        try:
            with source.open("rb") as handle:
                manifest = handle.read(4) not in ZIP_SIGNATURES
        except OSError as error:
            raise ImportFailed(f"cannot read {path}: {error.strerror or error}") from error
    if manifest:
        try:
            import_roots.confine_all(manifest_targets(source), roots)
        except import_roots.OutsideImportRoots as error:
            raise OutsideImportRoots(str(error)) from error
        except SourceError as error:
            raise ImportFailed(str(error)) from error
    return source


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
    batches = _batches(scan.items, BATCH_SIZE)
    first = next(batches, [])
    if settings.auto_image_shape and first and project.status().n_samples == 0:
        settings = _choose_shape(project, first)
    cache = TensorCache(
        project.cache_dir, channels=settings.channels, image_size=settings.image_size
    )
    rng = random.Random()
    seen: dict[str, tuple[str | None, str]] = {}  # sha256 -> (label, original name)
    for batch in itertools.chain([first], batches):
        accepted: list[_Accepted] = []
        for item in batch:
            outcome = _check(item, classes, settings.image_size, settings.channels)
            if isinstance(outcome, str):
                report.rejected.append((_printable(item.path), outcome))
                continue
            label = item.label.strip() if item.label and item.label.strip() else None
            name = _printable(original_name(item.path, scan.root))
            if outcome.sha256 in seen:
                conflict = _conflict(label, *seen[outcome.sha256])
                if conflict is None:
                    report.duplicates.append(_printable(item.path))
                else:
                    report.conflicts.append((_printable(item.path), conflict))
                continue
            seen[outcome.sha256] = (label, name)
            accepted.append(
                _Accepted(
                    item=item,
                    image=outcome,
                    label=label,
                    split=item.split or "pool",
                    stored_path=item.path,
                    original_name=name,
                )
            )
        _store(project, accepted, report, cache, rng, copy_files, pool_labels_are_gold)
    if report.accepted:
        # A new project's first representation, or a new one once the pool has grown enough.
        representation.after_import(project)
    return report.freeze()


def _choose_shape(project: Project, sample: list[SourceItem]) -> ProjectSettings:
    """The first import into a project without a chosen image shape picks one from its images
    (RGB photos are not read as 28 px grayscale); the project keeps it from then on."""
    decoded = []
    for item in sample:
        if item.data is None or item.error:
            continue
        try:
            decoded.append(decode_image(item.data, image_size=16, channels=3))
        except ImageRejected:
            continue
    if not decoded:
        return project.settings
    shape = choose_image_shape(decoded)

    def work(session: Session) -> ProjectSettings:
        # The system's choice, not a person's settings change: no lead role needed.
        row = queries.get_project_by_id(session, project.id)
        assert row is not None
        new = ProjectSettings.from_json(row.settings).updated(
            image_size=shape.image_size, channels=shape.channels, auto_image_shape=False
        )
        queries.update_project(session, project.id, settings=new.to_json())
        return new

    return with_write_retry(project.engine, work)


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
        existing = queries.samples_by_hash(session, project.id, [a.image.sha256 for a in accepted])
    fresh = [a for a in accepted if a.image.sha256 not in existing]
    for entry in accepted:
        if entry.image.sha256 in existing:
            _report_duplicate(report, entry, existing[entry.image.sha256])
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
                "original_name": entry.original_name,
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


def _report_duplicate(
    report: _Report, entry: _Accepted, existing: tuple[str | None, str | None, str]
) -> None:
    """A file already in the project: a plain duplicate, or a conflict when its label differs."""
    label, name, path = existing
    shown = name or Path(path).name
    conflict = _conflict(entry.label, label, shown)
    if conflict is None:
        report.duplicates.append(_printable(entry.item.path))
    else:
        report.conflicts.append((_printable(entry.item.path), conflict))


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
