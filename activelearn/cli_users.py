"""The `user` and `audit` subcommands: people and roles on this server, and the audit log."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from activelearn.errors import ActivelearnError
from activelearn.services import access
from activelearn.services.workspace import Workspace


def register(subparsers: Any, add_common: Callable[..., None]) -> None:
    """Add `user add|remove|list|passwd` and `audit` to the `activelearn` parser."""
    user = subparsers.add_parser(
        "user",
        help="people and roles: lead or annotator (the first lead turns log-in on)",
        description="While no lead exists the server is in open mode (anyone may do anything). "
        "Create a lead to turn roles and password log-in on.",
    )
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add a person, or change their role")
    add_common(add, project=False)
    add.add_argument("name", help="the log-in name (also the annotator name on their labels)")
    add.add_argument("--role", required=True, choices=access.ROLES)
    _password_options(add)
    add.add_argument(
        "--no-password",
        action="store_true",
        help="no password: the person logs in through OIDC (st.login) only, or keeps theirs",
    )
    add.set_defaults(handler=cmd_user_add)

    passwd = actions.add_parser("passwd", help="set a person's password")
    add_common(passwd, project=False)
    passwd.add_argument("name")
    _password_options(passwd)
    passwd.set_defaults(handler=cmd_user_passwd)

    remove = actions.add_parser("remove", help="remove a person (their labels stay)")
    add_common(remove, project=False)
    remove.add_argument("name")
    remove.set_defaults(handler=cmd_user_remove)

    listing = actions.add_parser("list", help="everyone with a role")
    add_common(listing, project=False)
    listing.set_defaults(handler=cmd_user_list)

    audit = subparsers.add_parser("audit", help="the audit log of lead actions, as CSV")
    add_common(audit, project=False)
    audit.add_argument("--project", default=None, help="one project's entries (default: all)")
    audit.add_argument("--out", default=None, help="CSV file (default: standard output)")
    audit.set_defaults(handler=cmd_audit)


def _password_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )


def _workspace(args: argparse.Namespace) -> Workspace:
    return Workspace(args.db, data_dir=args.data_dir)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ActivelearnError("no terminal to ask for a password: use --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise ActivelearnError("the passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        was_open = access.open_mode(ws)
        password = None if args.no_password else _read_password(args)
        if password is not None and len(password) < access.MIN_PASSWORD:
            raise ActivelearnError(f"a password needs at least {access.MIN_PASSWORD} characters")
        ws.set_role(args.name, args.role)
        if password is not None:
            ws.set_password(args.name, password)
        print(f"{args.name}: {args.role}" + ("" if password is None else " (password set)"))
        if was_open and args.role == "lead":
            print(
                "Open mode is over: from now on people log in, and only leads import, change "
                "settings, start rounds and export."
            )
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        ws.set_password(args.name, _read_password(args))
        print(f"{args.name}: password set (their other log-ins ended)")
    return 0


def cmd_user_remove(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        if not ws.remove_user(args.name):
            print(f"error: no user named {args.name!r}", file=sys.stderr)
            return 1
        print(f"removed {args.name} (their labels stay)")
        if access.open_mode(ws):
            print("No lead is left: the server is in open mode again (anyone may do anything).")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        everyone = access.list_people(ws)
    if not everyone:
        print("nobody registered: open mode (anyone may do anything)")
    for person in everyone:
        login = "password" if person.has_password else "no password (OIDC only)"
        print(f"{person.name}\t{person.role}\t{login}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    with _workspace(args) as ws:
        project = ws.project(args.project) if args.project else None
        data = access.audit_csv_bytes(ws, project=project)
    if args.out in (None, "-"):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(args.out).write_bytes(data)
        print(f"wrote the audit log to {args.out}", file=sys.stderr)
    return 0
