"""Find the files to import in a folder, a CSV manifest or a zip archive, trusting no name or size.

A scan checks the source as a whole up front (SourceError when it is unusable) and then yields its
files lazily, one SourceItem at a time, each carrying either the file's bytes or a plain reason it
could not be read. Whether the bytes are an image is decided later, by decode_image.

Rules shared by all sources:
- hidden names (".DS_Store", ".git/...") and OS litter ("__MACOSX", "Thumbs.db", "desktop.ini")
  are skipped silently;
- symbolic links are never followed, and are reported;
- at most MAX_FILE_BYTES + 1 bytes are read per file, so an oversized file is detectable without
  being read whole;
- nothing from a zip archive is ever written to disk.

scan_manifest reads the paths a local CSV names, anywhere on this machine: it is for the
operator's own files (CLI, server-side folders). Uploads from a browser should go through scan_zip,
whose manifest can only name members of the archive.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from activelearn.ingest.decode import MAX_FILE_BYTES

SPLITS: tuple[str, ...] = ("pool", "eval", "test")
MAX_MANIFEST_BYTES: int = 64 * 2**20
ZIP_MAX_TOTAL_BYTES: int = 2 * 2**30  # sum of the declared uncompressed sizes
ZIP_MAX_RATIO: int = 200  # uncompressed / compressed, checked for members above ...
ZIP_RATIO_MIN_BYTES: int = 10 * 2**20  # ... this uncompressed size
ZIP_MAX_MEMBERS: int = 200_000

_DEFAULT_ZIP_NAME = "upload.zip"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
ZIP_SIGNATURES = _ZIP_SIGNATURES  # a file starting with one of these is read as a zip
_LITTER = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
_UNSAFE_IN_ZIP = "unsafe path in zip (escapes the archive)"
_NESTED_ZIP = "nested zip archives are not imported"
_SYMLINK = "is a symlink (not followed)"


class SourceError(Exception):
    """The whole source is unusable; the message says why, for a person."""


@dataclass(frozen=True)
class SourceItem:
    path: str  # absolute file path (folders, CSV rows) or "archive.zip!inner/dir/a.png"
    data: bytes | None  # at most MAX_FILE_BYTES + 1 bytes; None when unreadable
    label: str | None  # class sub-folder or CSV 'label'; None when unlabeled
    split: str | None  # "pool" | "eval" | "test" from a CSV 'split' column; None means pool
    error: str | None  # why the file could not be read; None when data is set


@dataclass(frozen=True)
class SourceScan:
    kind: str  # "folder-flat" | "folder-classes" | "manifest" | "zip"
    classes: list[str]  # sub-folder names sorted, or CSV labels in first-seen order; [] unlabeled
    items: Iterator[SourceItem]  # lazy: files are read one at a time as it is consumed
    # What item paths are relative to for their original name: the folder, or the manifest's
    # folder; None for zips (the name after "!" is already relative) and the demo.
    root: str | None = None


# ----------------------------------------------------------------------------------------- folders


def scan_folder(path: str | Path) -> SourceScan:
    """A flat folder is an unlabeled pool; one sub-folder per class is a labeled set.

    In the class layout, files directly in the top folder are imported unlabeled, and files in
    deeper folders take the name of their top-level class folder. The top folder itself may be
    reached through a symlink (the user named it); nothing inside it is followed.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise SourceError(f"folder not found: {root}")
    if not root.is_dir():
        raise SourceError(f"not a folder: {root}")
    root = root.resolve()
    try:
        entries = _list_folder(root)
    except OSError as error:
        raise SourceError(f"cannot read folder {root}: {error.strerror or error}") from error
    classes = [entry.name for entry in entries if _is_real_folder(entry)]
    kind = "folder-classes" if classes else "folder-flat"
    return SourceScan(kind=kind, classes=classes, items=_folder_items(entries), root=str(root))


def _folder_items(entries: list[os.DirEntry[str]]) -> Iterator[SourceItem]:
    for entry in entries:
        if not _is_real_folder(entry):
            yield _file_item(entry.path, label=None)
    for entry in entries:
        if _is_real_folder(entry):
            yield from _walk(entry.path, label=entry.name)


def _walk(folder: str, *, label: str) -> Iterator[SourceItem]:
    """Every file below folder, depth first in name order, without following symlinks."""
    try:
        entries = _list_folder(Path(folder))
    except OSError as error:
        reason = "permission denied" if isinstance(error, PermissionError) else "unreadable"
        yield SourceItem(folder, None, label, None, f"cannot open folder ({reason})")
        return
    for entry in entries:
        if _is_real_folder(entry):
            yield from _walk(entry.path, label=label)
        else:
            yield _file_item(entry.path, label=label)


def _list_folder(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as scanner:
        entries = [entry for entry in scanner if not _is_skipped_name(entry.name)]
    return sorted(entries, key=lambda entry: entry.name)


def _is_real_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_skipped_name(name: str) -> bool:
    return name.startswith(".") or name.lower() in _LITTER


def _file_item(path: str, *, label: str | None, split: str | None = None) -> SourceItem:
    data, error = _read_file(path)
    return SourceItem(path=path, data=data, label=label, split=split, error=error)


def read_file(path: str) -> tuple[bytes | None, str | None]:
    """A stored file's bytes (at most MAX_FILE_BYTES + 1), or why it could not be read."""
    return _read_file(path)


def _read_file(path: str) -> tuple[bytes | None, str | None]:
    """The first MAX_FILE_BYTES + 1 bytes of a regular file, or why it could not be read."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, "file not found"
    except PermissionError:
        return None, "permission denied"
    except OSError as error:
        return None, f"could not read file ({error.strerror or error})"
    if stat.S_ISLNK(info.st_mode):
        return None, _SYMLINK
    if stat.S_ISDIR(info.st_mode):
        return None, "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        return None, "not a regular file"
    # O_NOFOLLOW closes the gap between lstat and open; O_NONBLOCK keeps a FIFO swapped in
    # meanwhile from blocking the import forever.
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_BINARY", 0)
    )
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        return None, "file not found"
    except PermissionError:
        return None, "permission denied"
    except OSError as error:
        if os.path.islink(path):
            return None, _SYMLINK
        return None, f"could not read file ({error.strerror or error})"
    try:
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None, "not a regular file"
            return handle.read(MAX_FILE_BYTES + 1), None
    except OSError as error:
        return None, f"could not read file ({error.strerror or error})"


# --------------------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class _ManifestRow:
    row: int  # as a spreadsheet numbers it: the header is row 1
    path: str
    label: str | None
    split: str | None
    error: str | None


def scan_manifest(path: str | Path) -> SourceScan:
    """A CSV with a 'path' column (required) and optional 'label' and 'split' columns.

    Column names are matched case-insensitively after stripping spaces; other columns are ignored.
    Relative paths are resolved against the CSV's folder. The file must be UTF-8 (a BOM is fine);
    comma, semicolon and tab separators are recognised by where the 'path' header is found.
    """
    manifest, rows, classes = _read_manifest(path)
    return SourceScan(
        kind="manifest",
        classes=classes,
        items=_manifest_items(manifest, rows),
        root=str(manifest.parent),
    )


def manifest_targets(path: str | Path) -> list[str]:
    """The file each row of a manifest names, as the import would open it. Nothing but the CSV
    itself is read: the import roots check sees these before any image is opened."""
    manifest, rows, _classes = _read_manifest(path)
    return [_row_target(manifest.parent, row) for row in rows if row.path]


def _read_manifest(path: str | Path) -> tuple[Path, list[_ManifestRow], list[str]]:
    manifest = Path(path).expanduser()
    if not manifest.exists():
        raise SourceError(f"manifest not found: {manifest}")
    if not manifest.is_file():
        raise SourceError(f"not a file: {manifest}")
    manifest = manifest.resolve()
    try:
        with manifest.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise SourceError(f"cannot read {manifest.name}: {error.strerror or error}") from error
    if len(raw) > MAX_MANIFEST_BYTES:
        raise SourceError(f"{manifest.name} is too large (limit {MAX_MANIFEST_BYTES // 2**20} MiB)")
    rows, classes = _parse_manifest(raw, name=manifest.name)
    return manifest, rows, classes


def _row_target(folder: Path, row: _ManifestRow) -> str:
    target = os.path.abspath(folder / row.path)
    if "\\" in row.path and os.sep == "/" and not os.path.lexists(target):
        # A manifest written on Windows: "images\cat\a.png".
        target = os.path.abspath(folder / row.path.replace("\\", "/"))
    return target


def _manifest_items(manifest: Path, rows: list[_ManifestRow]) -> Iterator[SourceItem]:
    folder = manifest.parent
    for row in rows:
        if row.error is not None:
            shown = os.path.abspath(folder / row.path) if row.path else str(manifest)
            yield SourceItem(shown, None, row.label, row.split, row.error)
            continue
        yield _file_item(_row_target(folder, row), label=row.label, split=row.split)


def _parse_manifest(raw: bytes, *, name: str) -> tuple[list[_ManifestRow], list[str]]:
    """Validate a manifest's bytes: (rows in file order, labels in first-seen order)."""
    if b"\x00" in raw[:8192]:
        raise SourceError(f"{name} is not a CSV file (it contains binary data)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        byte = raw[error.start : error.start + 1].hex()
        raise SourceError(
            f"{name} is not UTF-8 text: byte 0x{byte} on line {line} is not valid UTF-8 "
            "(the file may be Latin-1 or Windows-1252); save it as 'CSV UTF-8' and try again"
        ) from None

    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise SourceError(f"{name} is empty")
        columns = [column.strip() for column in header]
        lowered = [column.lower() for column in columns]
        if "path" not in lowered:
            found = ", ".join(column for column in columns if column) or "none"
            raise SourceError(f"{name} has no 'path' column (columns found: {found})")
        for wanted in ("path", "label", "split"):
            if lowered.count(wanted) > 1:
                raise SourceError(f"{name} has more than one '{wanted}' column")
        path_at = lowered.index("path")
        label_at = lowered.index("label") if "label" in lowered else None
        split_at = lowered.index("split") if "split" in lowered else None

        rows: list[_ManifestRow] = []
        classes: dict[str, None] = {}  # an insertion-ordered set
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue  # blank line
            number = reader.line_num

            def cell(index: int | None, fields: list[str] = fields) -> str:
                return fields[index].strip() if index is not None and index < len(fields) else ""

            file_path = cell(path_at)
            label = cell(label_at) or None
            split_text = cell(split_at)
            split = split_text.lower() or None
            error = None
            if not file_path:
                error = f"manifest row {number}: path is empty"
            elif split is not None and split not in SPLITS:
                error = (
                    f"manifest row {number}: unknown split {split_text!r} "
                    "(expected pool, eval or test)"
                )
                split = None
            if label is not None and error is None:
                classes[label] = None
            rows.append(_ManifestRow(number, file_path, label, split, error))
    except csv.Error as error:
        raise SourceError(f"{name} line {reader.line_num}: {error}") from error
    return rows, list(classes)


def _delimiter(text: str) -> str:
    """',' unless the header only has a 'path' column when split on ';' or a tab."""
    header = text.split("\n", 1)[0]
    for candidate in (",", ";", "\t"):
        fields = next(csv.reader([header], delimiter=candidate), [])
        if "path" in (field.strip().lower() for field in fields):
            return candidate
    return ","


# -------------------------------------------------------------------------------------------- zips


def scan_zip(path_or_bytes: str | Path | bytes, *, name: str = _DEFAULT_ZIP_NAME) -> SourceScan:
    """A zip holding a folder layout (flat or class sub-folders, possibly under one top folder),
    or a manifest CSV at its top level whose paths are members of the archive.

    Members are read in memory, never extracted. Item paths read "<name>!<member>", where name is
    the given name for bytes, and the archive's absolute path for a path unless a name is given.
    Refused as a whole (SourceError): not a zip, more than ZIP_MAX_MEMBERS members, declared
    uncompressed sizes summing past ZIP_MAX_TOTAL_BYTES, or a member above ZIP_RATIO_MIN_BYTES
    that expands more than ZIP_MAX_RATIO times.
    """
    handle: BinaryIO
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        shown = name
        handle = io.BytesIO(bytes(path_or_bytes))
    else:
        archive = Path(path_or_bytes).expanduser()
        if not archive.is_file():
            raise SourceError(f"zip file not found: {archive}")
        archive = archive.resolve()
        shown = str(archive) if name == _DEFAULT_ZIP_NAME else name
        try:
            handle = archive.open("rb")
        except OSError as error:
            raise SourceError(f"cannot read {archive}: {error.strerror or error}") from error
    try:
        return _scan_open_zip(handle, shown)
    except BaseException:
        handle.close()
        raise


def _scan_open_zip(handle: BinaryIO, shown: str) -> SourceScan:
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as error:
        raise SourceError(f"not a zip file: {shown}") from error
    try:
        infos = archive.infolist()
        _refuse_bombs(infos, shown)
        unsafe: list[zipfile.ZipInfo] = []
        members: dict[str, zipfile.ZipInfo] = {}  # normalised name -> member
        for info in infos:
            if info.is_dir() or info.filename.endswith(("/", "\\")):
                continue
            if _escapes(info.filename):
                unsafe.append(info)
                continue
            parts = _parts(info.filename)
            if parts and not any(_is_skipped_name(part) for part in parts):
                members.setdefault("/".join(parts), info)

        # One folder holding everything ("cats-vs-dogs/cat/1.png") is the archive's real root.
        base = ""
        tops = {member.split("/", 1)[0] for member in members}
        if len(tops) == 1 and all("/" in member for member in members):
            base = tops.pop() + "/"
        relative = {member[len(base) :]: info for member, info in members.items()}

        manifest = _find_manifest(relative, shown)
        if manifest is not None:
            raw = _read_manifest_member(archive, relative[manifest], shown)
            rows, classes = _parse_manifest(raw, name=manifest)
            items = _zip_manifest_items(archive, handle, shown, unsafe, rows, relative, members)
        else:
            classes = sorted({member.split("/", 1)[0] for member in relative if "/" in member})
            items = _zip_folder_items(archive, handle, shown, unsafe, relative)
    except BaseException:
        archive.close()
        raise
    return SourceScan(kind="zip", classes=classes, items=items)


def _refuse_bombs(infos: list[zipfile.ZipInfo], shown: str) -> None:
    if len(infos) > ZIP_MAX_MEMBERS:
        raise SourceError(
            f"zip archive refused: {shown} has {len(infos):,} members (limit {ZIP_MAX_MEMBERS:,})"
        )
    total = sum(info.file_size for info in infos)
    if total > ZIP_MAX_TOTAL_BYTES:
        raise SourceError(
            f"zip archive refused: {shown} would unpack to {_gibibytes(total)} "
            f"(limit {_gibibytes(ZIP_MAX_TOTAL_BYTES)})"
        )
    for info in infos:
        if info.file_size > ZIP_RATIO_MIN_BYTES and info.file_size > ZIP_MAX_RATIO * max(
            info.compress_size, 1
        ):
            ratio = info.file_size / max(info.compress_size, 1)
            raise SourceError(
                f"zip archive refused: member {info.filename!r} of {shown} would expand "
                f"{ratio:,.0f} times, to {info.file_size / 2**20:,.0f} MiB (looks like a zip bomb)"
            )


def _find_manifest(relative: dict[str, zipfile.ZipInfo], shown: str) -> str | None:
    top_level_csvs = sorted(
        member for member in relative if "/" not in member and member.lower().endswith(".csv")
    )
    for member in top_level_csvs:
        if member.lower() == "manifest.csv":
            return member
    if len(top_level_csvs) > 1:
        raise SourceError(
            f"{shown} has several CSV files at its top level ({', '.join(top_level_csvs)}); "
            "name the one that lists the images manifest.csv"
        )
    return top_level_csvs[0] if top_level_csvs else None


def _read_manifest_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str) -> bytes:
    data, error = _read_member(archive, info, limit=MAX_MANIFEST_BYTES + 1)
    if data is None:
        raise SourceError(f"cannot read {info.filename} in {shown}: {error}")
    if len(data) > MAX_MANIFEST_BYTES:
        raise SourceError(
            f"{info.filename} in {shown} is too large (limit {MAX_MANIFEST_BYTES // 2**20} MiB)"
        )
    return data


def _zip_folder_items(
    archive: zipfile.ZipFile,
    handle: BinaryIO,
    shown: str,
    unsafe: list[zipfile.ZipInfo],
    relative: dict[str, zipfile.ZipInfo],
) -> Iterator[SourceItem]:
    try:
        yield from _unsafe_items(shown, unsafe)
        for member in sorted(relative):
            label = member.split("/", 1)[0] if "/" in member else None
            yield _member_item(archive, relative[member], shown, label=label, split=None)
    finally:
        archive.close()
        handle.close()


def _zip_manifest_items(
    archive: zipfile.ZipFile,
    handle: BinaryIO,
    shown: str,
    unsafe: list[zipfile.ZipInfo],
    rows: list[_ManifestRow],
    relative: dict[str, zipfile.ZipInfo],
    members: dict[str, zipfile.ZipInfo],
) -> Iterator[SourceItem]:
    """Manifest paths are relative to the manifest (the archive's root folder); a full member
    name is accepted too."""
    try:
        yield from _unsafe_items(shown, unsafe)
        for row in rows:
            if row.error is not None:
                yield SourceItem(f"{shown}!{row.path}", None, row.label, row.split, row.error)
                continue
            if _escapes(row.path):
                yield SourceItem(f"{shown}!{row.path}", None, row.label, row.split, _UNSAFE_IN_ZIP)
                continue
            key = "/".join(_parts(row.path))
            info = relative.get(key) or members.get(key)
            if info is None:
                yield SourceItem(
                    f"{shown}!{row.path}", None, row.label, row.split, "file not found in zip"
                )
                continue
            yield _member_item(archive, info, shown, label=row.label, split=row.split)
    finally:
        archive.close()
        handle.close()


def _unsafe_items(shown: str, unsafe: list[zipfile.ZipInfo]) -> Iterator[SourceItem]:
    for info in unsafe:
        yield SourceItem(f"{shown}!{info.filename}", None, None, None, _UNSAFE_IN_ZIP)


def _member_item(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    shown: str,
    *,
    label: str | None,
    split: str | None,
) -> SourceItem:
    data, error = _read_member(archive, info, limit=MAX_FILE_BYTES + 1)
    return SourceItem(f"{shown}!{info.filename}", data, label, split, error)


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, limit: int
) -> tuple[bytes | None, str | None]:
    """At most limit bytes of a member, however large its header says it is, or why not.

    zipfile also stops at the declared size, so the bytes read across an archive never exceed
    the declared total that _refuse_bombs capped.
    """
    if info.flag_bits & 0x1:
        return None, "encrypted (password-protected zip members are not supported)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return None, _SYMLINK
    if info.filename.lower().endswith(".zip"):
        return None, _NESTED_ZIP
    try:
        with archive.open(info) as member:
            data = member.read(limit)
    except NotImplementedError:
        return None, "unsupported zip compression method"
    except RuntimeError:  # zipfile raises this for encryption it detects late
        return None, "encrypted (password-protected zip members are not supported)"
    except Exception:  # CRC mismatch, bad local header, broken deflate stream, ...
        return None, "corrupt zip member"
    if data.startswith(_ZIP_SIGNATURES):
        return None, _NESTED_ZIP
    return data, None


def _escapes(name: str) -> bool:
    """Absolute, drive-qualified, or climbing out with '..' (with either slash)."""
    normal = name.replace("\\", "/")
    return (
        normal.startswith("/")
        or re.match(r"^[A-Za-z]:", normal) is not None
        or "\x00" in normal
        or any(part == ".." for part in normal.split("/"))
    )


def _parts(name: str) -> list[str]:
    return [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]


def _gibibytes(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB".replace(".0 GiB", " GiB")


# ---------------------------------------------------------------------------------------- dispatch


def scan_source(path: str | Path) -> SourceScan:
    """A folder -> scan_folder; a file starting with the zip signature -> scan_zip (whatever its
    name); any other file -> scan_manifest (which rejects what is not a UTF-8 CSV)."""
    source = Path(path).expanduser()
    if source.is_dir():
        return scan_folder(source)
    if not source.exists():
        raise SourceError(f"not found: {source}")
    try:
        with source.open("rb") as handle:
            head = handle.read(4)
    except OSError as error:
        raise SourceError(f"cannot read {source}: {error.strerror or error}") from error
    if head in _ZIP_SIGNATURES:
        return scan_zip(source)
    if source.suffix.lower() == ".zip":
        raise SourceError(f"not a zip file: {source.name}")
    return scan_manifest(source)
