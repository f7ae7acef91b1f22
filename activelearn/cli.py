"""The `activelearn` command: demo, import, status, export, backup, train, worker, user, ..."""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from activelearn import __version__, cli_rounds, cli_users
from activelearn.errors import (
    ActivelearnError,
    ImportFailed,
    InvalidSetting,
    ProjectNotFound,
)
from activelearn.services import export
from activelearn.services.importing import import_manifest, import_source
from activelearn.services.settings import ProjectSettings
from activelearn.services.workspace import DEMO_PROJECT, Project, Workspace
from db.engine import is_sqlite, sqlite_backup

DB_HELP = "SQLAlchemy URL (default: $ACTIVELEARN_DB_URL, else sqlite:///data/activelearn.db)"
DATA_DIR_HELP = (
    "folder for caches, stored files and checkpoints "
    "(default: $ACTIVELEARN_DATA_DIR, else beside the SQLite file)"
)


class CliError(ActivelearnError):
    """A command line that cannot be carried out as given."""


class _Parser(argparse.ArgumentParser):
    """Usage errors are one `error:` line and exit code 1, like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"error: {message} (see `{self.prog} --help`)\n")


def _workspace(args: argparse.Namespace, *, create: bool = False) -> Workspace:
    """The database of --db; only creating commands (demo, import) make a new one."""
    return Workspace(args.db, data_dir=args.data_dir, create=create)


def _project(ws: Workspace, name: str | None) -> Project:
    """--project, or the only project when there is exactly one; never a guess among several."""
    return ws.only_project(name)


def _add_common(parser: argparse.ArgumentParser, *, project: bool = True) -> None:
    parser.add_argument("--db", default=None, help=DB_HELP)
    parser.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    if project:
        parser.add_argument(
            "--project",
            default=None,
            help="project name (may be left out when the database has exactly one project)",
        )


def cmd_demo(args: argparse.Namespace) -> int:
    with _workspace(args, create=True) as ws:
        project = ws.ensure_demo(args.project or DEMO_PROJECT)
        status = project.status()
        print(
            f"project {project.name!r}: {status.n_pool} pool samples, "
            f"{status.n_test} test samples, {status.n_labeled} labeled"
        )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    if not args.project:
        raise CliError("--project is required: the project to import into (created with --classes)")
    source = Path(args.source)
    if not source.exists():
        raise ImportFailed(f"{source} does not exist")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    with _workspace(args, create=True) as ws:
        created = False
        try:
            project = ws.project(args.project)
        except ProjectNotFound:
            if not classes:
                raise ProjectNotFound(
                    f"no project named {args.project!r}: give --classes a,b,... to create it"
                ) from None
            project = ws.create_project(args.project, classes)
            created = True
        if classes and not created and classes != project.classes:
            raise CliError(
                f"project {project.name!r} exists with classes {','.join(project.classes)}; "
                "--classes only names the classes of a new project "
                "(--add-classes adds those found in the source)"
            )
        try:
            if args.manifest:
                report = import_manifest(project, source, add_classes=args.add_classes)
            else:
                report = import_source(project, source, add_classes=args.add_classes)
        except BaseException:
            if created:
                ws.remove_empty_project(project.name)
            raise
        if created and not report.accepted:
            ws.remove_empty_project(project.name)
        print(report.summary())
        for path, reason in report.rejected:
            print(f"  rejected: {path}: {reason}")
    if not report.accepted:
        raise CliError(
            "nothing was imported"
            + (f" (project {args.project!r} was not created)" if created else "")
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        projects = [ws.project(args.project)] if args.project else ws.projects()
        rows = [_status_row(project) for project in projects]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no projects yet: run `activelearn demo` or `activelearn import`")
    for row in rows:
        print(
            f"{row['project']}: {row['labeled']}/{row['pool']} pool samples labeled, "
            f"{row['eval']} audit, {row['test']} test; {row['labels_since_round']} labels since "
            f"the ranking was trained; rounds: {row['rounds']}"
            + (f"; active round {row['active_round']}" if row["active_round"] else "")
            + f"; representation: {row['representation']}"
        )
    return 0


def _status_row(project: Project) -> dict[str, object]:
    status = project.status()
    rounds = project.rounds()
    active = project.active_round()
    return {
        "representation": _representation_line(project),
        "project": project.name,
        "classes": project.classes,
        "pool": status.n_pool,
        "labeled": status.n_labeled,
        "unlabeled": status.n_unlabeled,
        "eval": status.n_eval,
        "test": status.n_test,
        "labels_since_round": status.labels_since_round,
        "rounds": len(rounds),
        "active_round": f"#{active.id} {active.status} ({active.phase})" if active else None,
        "pool_exhausted": status.pool_exhausted,
    }


def _representation_line(project: Project) -> str:
    """The embeddings served, and the newest job when it is not the one served."""
    state = project.representation_status()
    current, latest = state.current, state.latest
    text = f"{current.version} ({current.n_embedded} samples)" if current else "none yet"
    if latest is not None and (current is None or latest.id != current.id):
        text += f", job #{latest.id} {latest.status} ({latest.phase} {latest.progress:.0%})"
        if latest.error:
            text += f": {latest.error}"
    return text


_FILE_EXPORTS = {
    "csv": export.labels_csv_bytes,
    "jsonl": export.labels_jsonl_bytes,
    "predictions-csv": export.predictions_csv_bytes,
    "predictions-parquet": export.predictions_parquet_bytes,
}
_FOLDER_EXPORTS = ("imagefolder", "checkpoint")


def cmd_export(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        project = _project(ws, args.project)
        if args.format in _FOLDER_EXPORTS:
            if args.out in (None, "-"):
                raise CliError(f"--format {args.format} writes a folder: give --out DIR")
            if args.format == "imagefolder":
                written = export.export_image_folder(project, args.out, force=args.force)
                print(f"copied {written} labeled images into {args.out}", file=sys.stderr)
            else:
                export.export_checkpoint(project, args.out, force=args.force)
                print(f"wrote the latest checkpoint to {args.out}", file=sys.stderr)
            return 0
        if args.out not in (None, "-"):
            export.check_file_target(args.out, force=args.force)  # before any work
        data = _FILE_EXPORTS[args.format](project)
    if args.out in (None, "-"):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        export.write_file(args.out, data, force=args.force)
        print(f"wrote {args.format} ({len(data):,} bytes) to {args.out}", file=sys.stderr)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    target = Path(args.out)
    if target.is_dir():
        raise CliError(f"{target} is a folder: give the backup file's name")
    if not target.parent.is_dir():
        raise CliError(f"folder {target.parent} does not exist")
    if target.exists() and not args.force:
        raise CliError(f"{target} exists: add --force to overwrite it")
    with _workspace(args) as ws:
        if not is_sqlite(ws.engine):
            raise CliError(
                "backups of PostgreSQL databases are made with pg_dump, e.g. "
                'pg_dump --format=custom --file=activelearn.dump "$DATABASE_URL" '
                "(restore with pg_restore --clean --dbname=...)"
            )
        partial = target.with_name(f".{target.name}.partial")
        try:
            sqlite_backup(ws.engine, partial)
            partial.replace(target)
        except sqlite3.Error as error:
            raise CliError(f"could not back up to {target}: {error}") from error
        finally:
            partial.unlink(missing_ok=True)
        print(f"backed up to {target}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    """Show a project's settings, or change some: key=value pairs."""
    with _workspace(args) as ws:
        project = _project(ws, args.project)
        before = project.settings
        if args.changes:
            changes = dict(_parse_setting(before, item) for item in args.changes)
            after = project.update_settings(**changes)
            if (after.image_size, after.channels) != (before.image_size, before.channels):
                print(
                    f"image_size/channels changed: the next round first rebuilds the tensor cache "
                    f"of {project.status().n_samples} images from their stored files",
                    file=sys.stderr,
                )
        settings = project.settings.to_json()
    if args.json:
        print(json.dumps(settings, indent=2))
        return 0
    for key, value in settings.items():
        shown = ",".join(value) if isinstance(value, list) else value
        print(f"{key}={shown}")
    return 0


def _parse_setting(current: ProjectSettings, item: str) -> tuple[str, object]:
    key, sep, raw = item.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise CliError(f"settings are changed as key=value, got {item!r}")
    known = current.to_json()
    if key not in known:
        raise InvalidSetting(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
    kind = type(known[key])
    raw = raw.strip()
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return key, lowered in ("true", "1", "yes", "on")
        if kind is int:
            return key, int(raw)
        if kind is float:
            return key, float(raw)
        if kind is list:
            return key, [name.strip() for name in raw.split(",") if name.strip()]
    except ValueError:
        raise InvalidSetting(f"{key} takes a {kind.__name__}, got {raw!r}") from None
    return key, raw


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="activelearn",
        description="Active-learning image labeling with deep ensembles.",
    )
    parser.add_argument("--version", action="version", version=f"activelearn {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when a command fails"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="create the built-in MNIST demo project (5,000 digits)")
    _add_common(demo, project=False)
    demo.add_argument("--project", default=None, help=f"its name (default: {DEMO_PROJECT})")
    demo.set_defaults(handler=cmd_demo)

    imp = sub.add_parser(
        "import",
        help="import images: a folder (flat or one sub-folder per class), a CSV manifest or a zip",
        description="Exit code 0 when at least one image was imported, 1 when none was.",
    )
    _add_common(imp, project=False)
    imp.add_argument(
        "--project", default=None, help="the project to import into (required; new with --classes)"
    )
    imp.add_argument("source", help="folder, CSV manifest (path[,label][,split]) or zip file")
    imp.add_argument("--manifest", action="store_true", help="treat SOURCE as a CSV manifest")
    imp.add_argument(
        "--classes", help="comma-separated classes: creates the project (a new one only)"
    )
    imp.add_argument(
        "--add-classes", action="store_true", help="add class names found in the source"
    )
    imp.set_defaults(handler=cmd_import)

    status = sub.add_parser("status", help="labels, rounds and queue state per project")
    _add_common(status, project=False)
    status.add_argument("--project", default=None, help="one project (default: all)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    exporter = sub.add_parser(
        "export",
        help="export labels, pool predictions or the latest checkpoint",
        description="labels as csv/jsonl or an ImageFolder copy (one folder per class); the "
        "latest round's pool predictions with every uncertainty score (csv/parquet); the latest "
        "checkpoint (safetensors + config.json + classes.json)",
    )
    _add_common(exporter)
    exporter.add_argument(
        "--format",
        choices=(*_FILE_EXPORTS, *_FOLDER_EXPORTS),
        default="csv",
        help="csv | jsonl: labels; predictions-csv | predictions-parquet: the latest round's "
        "pool predictions; imagefolder | checkpoint: a folder (default: csv)",
    )
    exporter.add_argument(
        "--out",
        default=None,
        help="output file, or folder for imagefolder/checkpoint (default: standard output)",
    )
    exporter.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output file or folder (a folder is written fresh and whole)",
    )
    exporter.set_defaults(handler=cmd_export)

    backup = sub.add_parser(
        "backup", help="a consistent copy of the SQLite database while annotators keep working"
    )
    _add_common(backup, project=False)
    backup.add_argument("out", help="the backup file to write")
    backup.add_argument("--force", action="store_true", help="overwrite an existing file")
    backup.set_defaults(handler=cmd_backup)

    settings = sub.add_parser(
        "settings",
        help="show a project's settings, or change them: key=value ...",
        description="Without KEY=VALUE pairs, prints every setting. Changing image_size or "
        "channels makes the next round rebuild the tensor cache from the stored files.",
    )
    _add_common(settings)
    settings.add_argument(
        "changes", nargs="*", metavar="KEY=VALUE", help="settings to change, e.g. members=3"
    )
    settings.add_argument("--json", action="store_true", help="machine-readable output")
    settings.set_defaults(handler=cmd_settings)

    cli_rounds.register(sub, _add_common)
    cli_users.register(sub, _add_common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        # A round run in-process (train --wait) logs its traceback; the command says the reason
        # in one line instead (the worker command configures its own log).
        logging.getLogger("activelearn").addHandler(logging.NullHandler())
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    """A failure as one line: our errors say what to do; anything else names its type."""
    text = " ".join(str(error).split())
    if isinstance(error, ActivelearnError | CliError):
        return text
    original = getattr(error, "orig", None)  # a database driver's own message
    if original is not None and str(original).strip():
        return " ".join(str(original).split())
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    name = type(error).__name__
    return f"{name}: {text} (run with --debug for the traceback)" if text else name


if __name__ == "__main__":
    sys.exit(main())
