"""The `activelearn` command: demo, import, status, export, backup (and train, worker, simulate)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from activelearn import cli_rounds
from activelearn.errors import ActivelearnError
from activelearn.services import export
from activelearn.services.importing import import_manifest, import_source
from activelearn.services.workspace import DEMO_PROJECT, Project, Workspace
from db.engine import is_sqlite, sqlite_backup


def _workspace(args: argparse.Namespace) -> Workspace:
    return Workspace(args.db, data_dir=args.data_dir)


def _add_common(parser: argparse.ArgumentParser, *, project: bool = True) -> None:
    parser.add_argument(
        "--db",
        default=None,
        help="SQLAlchemy URL (default: $ACTIVELEARN_DB_URL or sqlite:///data/activelearn.db)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder for caches, stored files and checkpoints (default: beside the SQLite file)",
    )
    if project:
        parser.add_argument(
            "--project", default=DEMO_PROJECT, help=f"project name (default: {DEMO_PROJECT})"
        )


def cmd_demo(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        project = ws.ensure_demo(args.project)
        status = project.status()
        print(
            f"project {project.name!r}: {status.n_pool} pool samples, "
            f"{status.n_test} test samples, {status.n_labeled} labeled"
        )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        try:
            project = ws.project(args.project)
        except ActivelearnError:
            if not args.classes:
                raise
            project = ws.create_project(args.project, [c.strip() for c in args.classes.split(",")])
        source = Path(args.source)
        if args.manifest:
            report = import_manifest(project, source, add_classes=args.add_classes)
        else:
            report = import_source(project, source, add_classes=args.add_classes)
        print(report.summary())
        for path, reason in report.rejected:
            print(f"  rejected: {path}: {reason}")
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
        )
    return 0


def _status_row(project: Project) -> dict[str, object]:
    status = project.status()
    rounds = project.rounds()
    active = project.active_round()
    return {
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


_FILE_EXPORTS = {
    "csv": export.labels_csv_bytes,
    "jsonl": export.labels_jsonl_bytes,
    "predictions-csv": export.predictions_csv_bytes,
    "predictions-parquet": export.predictions_parquet_bytes,
}
_FOLDER_EXPORTS = ("imagefolder", "checkpoint")


def cmd_export(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        project = ws.project(args.project)
        if args.format in _FOLDER_EXPORTS:
            if args.out in (None, "-"):
                print(
                    f"error: --format {args.format} writes a folder: give --out DIR",
                    file=sys.stderr,
                )
                return 2
            if args.format == "imagefolder":
                written = export.write_image_folder(project, args.out).written
                print(f"copied {written} labeled images into {args.out}", file=sys.stderr)
            else:
                export.write_checkpoint(project, args.out)
                print(f"wrote the latest checkpoint to {args.out}", file=sys.stderr)
            return 0
        data = _FILE_EXPORTS[args.format](project)
    if args.out in (None, "-"):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(args.out).write_bytes(data)
        print(f"wrote {args.format} ({len(data):,} bytes) to {args.out}", file=sys.stderr)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        if not is_sqlite(ws.engine):
            print(
                "backups of PostgreSQL databases are made with pg_dump, e.g.\n"
                '  pg_dump --format=custom --file=activelearn.dump "$DATABASE_URL"\n'
                "and restored with pg_restore --clean --dbname=...",
                file=sys.stderr,
            )
            return 2
        target = Path(args.out)
        sqlite_backup(ws.engine, target)
        print(f"backed up to {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="activelearn",
        description="Active-learning image labeling with deep ensembles.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="create the built-in MNIST demo project (5,000 digits)")
    _add_common(demo)
    demo.set_defaults(handler=cmd_demo)

    imp = sub.add_parser(
        "import",
        help="import images: a folder (flat or one sub-folder per class), a CSV manifest or a zip",
    )
    _add_common(imp)
    imp.add_argument("source", help="folder, CSV manifest (path[,label][,split]) or zip file")
    imp.add_argument("--manifest", action="store_true", help="treat SOURCE as a CSV manifest")
    imp.add_argument("--classes", help="comma-separated classes, to create the project if needed")
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
    exporter.add_argument("--format", choices=(*_FILE_EXPORTS, *_FOLDER_EXPORTS), default="csv")
    exporter.add_argument(
        "--out",
        default=None,
        help="output file, or folder for imagefolder/checkpoint (default: standard output)",
    )
    exporter.set_defaults(handler=cmd_export)

    backup = sub.add_parser(
        "backup", help="a consistent copy of the SQLite database while annotators keep working"
    )
    _add_common(backup, project=False)
    backup.add_argument("out", help="the backup file to write")
    backup.set_defaults(handler=cmd_backup)

    cli_rounds.register(sub, _add_common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ActivelearnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
