"""Import roots: server paths typed into the browser must resolve inside configured folders.

A path is resolved the way the kernel will open it (symlinks followed, `..` collapsed) and
compared with each root resolved the same way, so neither `../`, nor an absolute path, nor a
symlink inside a root that points out of it reaches a file elsewhere on the server.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path


class OutsideImportRoots(ValueError):
    """A path resolves outside the import roots (services turn it into the public error)."""


ROOTS_ENV = "ACTIVELEARN_IMPORT_ROOTS"
DEFAULT_ROOT_NAME = "import"  # under the data folder: data/import/ by default


def configured_roots(data_dir: str | Path, environ: dict[str, str] | None = None) -> list[Path]:
    """ACTIVELEARN_IMPORT_ROOTS (os.pathsep-separated), else `<data_dir>/import`."""
    env = os.environ if environ is None else environ
    raw = env.get(ROOTS_ENV, "")
    roots = [Path(part) for part in raw.split(os.pathsep) if part.strip()]
    return roots or [Path(data_dir) / DEFAULT_ROOT_NAME]


def _resolved(path: str | Path) -> Path:
    # realpath (not Path.resolve(strict=True)): a missing file still resolves, so the answer
    # "outside the roots" never depends on whether something exists there.
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def roots_text(roots: Sequence[Path]) -> str:
    return ", ".join(str(_resolved(root)) for root in roots)


def is_inside(path: str | Path, roots: Iterable[Path]) -> bool:
    target = _resolved(path)
    for root in roots:
        base = _resolved(root)
        if target == base or base in target.parents:
            return True
    return False


def confine(path: str | Path, roots: Sequence[Path]) -> Path:
    """`path` resolved, when it lies inside one of `roots`; otherwise OutsideImportRoots (whose
    message names the roots). Nothing is opened or read."""
    text = os.fspath(path)
    if "\x00" in text:
        raise OutsideImportRoots("the path contains a NUL character")
    if not text.strip():
        raise OutsideImportRoots("type a path inside the import folders: " + roots_text(roots))
    if not is_inside(text, roots):
        raise OutsideImportRoots(
            f"{text!r} is outside the import folders of this server. Put the files under "
            f"{roots_text(roots)} (set {ROOTS_ENV} to change them), or import them with the "
            "`activelearn import` command on the server."
        )
    return _resolved(text)


def confine_all(paths: Iterable[str], roots: Sequence[Path], *, shown_limit: int = 5) -> None:
    """Refuse the whole source when any of `paths` (e.g. a manifest's rows) resolves outside
    `roots`: the message lists the first few and names the roots."""
    outside = [path for path in paths if "\x00" in path or not is_inside(path, roots)]
    if not outside:
        return
    shown = ", ".join(repr(path) for path in outside[:shown_limit])
    more = f" and {len(outside) - shown_limit:,} more" if len(outside) > shown_limit else ""
    raise OutsideImportRoots(
        f"the manifest names {len(outside):,} file(s) outside the import folders of this server "
        f"({shown}{more}); nothing was imported. Every file must lie under {roots_text(roots)}."
    )
