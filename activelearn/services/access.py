"""Who may do what: roles (lead, annotator), password log-in with throttling, log-in sessions,
and the audit log of lead actions.

The acting user is bound to a Workspace (`Workspace(url, user=...)`). `user=None` is the local
operator (the CLI, a script holding the database URL): it may do everything, as it could edit
the database anyway. While no lead exists the server is in open mode: everyone may do
everything (one person on their own machine). Once a lead exists, only leads create projects,
import, change settings, request or cancel rounds, export, manage people, read the audit log,
send labels back for review and correct other people's labels; annotators (registered users
with the annotator role) label, skip, undo and correct their own labels; anyone else may do
nothing. Every refusal is a NotAllowed with a message a person can act on.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import io
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from activelearn.clock import utcnow
from activelearn.errors import InvalidAnnotator, LoginFailed, LoginThrottled, NotAllowed
from activelearn.services.validation import validate_annotator
from db import people
from db.engine import read_session, with_write_retry

if TYPE_CHECKING:
    from activelearn.services.workspace import Project, Workspace

ROLES = ("lead", "annotator")
LOCAL = "local"  # the audit log's name for user=None (the CLI, a script)
# The UI binds this before anyone has logged in: not a valid user name (control character), so
# it holds no role, and in team mode every check refuses it.
ANONYMOUS = "\x01anonymous"
MIN_PASSWORD = 8
FREE_ATTEMPTS = 5  # failed log-ins per name before the lock-out starts
FIRST_LOCK_SECONDS = 30  # then doubles with every further failure ...
MAX_LOCK_SECONDS = 15 * 60  # ... up to this
FAILURES_FORGOTTEN_AFTER = timedelta(hours=1)
FREE_CLIENT_ATTEMPTS = 30  # failed log-ins per client (IP address) before its lock-out starts
CLIENT_KEY = "\x01client:"  # throttle rows per client: never a typed name (control character)
SESSION_HOURS_ENV = "ACTIVELEARN_SESSION_HOURS"
DEFAULT_SESSION_HOURS = 12.0
OPEN_SESSION_DAYS = 7  # a typed name in open mode survives reloads this long
HOW_TO_ADD = "a lead adds people with `activelearn user add NAME --role annotator`"


def _password_hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with the library's current recommended parameters


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_role(role: str) -> str:
    value = (role or "").strip().lower()
    if value not in ROLES:
        raise NotAllowed(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return value


def validate_user_name(name: str) -> str:
    return validate_annotator(name)


def shown(user: str | None) -> str:
    if user is None:
        return LOCAL
    return "someone not logged in" if user == ANONYMOUS else user


# ---------------------------------------------------------------- checks


def is_open_mode(session: Session) -> bool:
    return not people.any_lead(session)


def role_in(session: Session, user: str | None) -> str | None:
    """The acting user's effective role: 'lead' for the local operator and in open mode."""
    if user is None or is_open_mode(session):
        return "lead"
    row = people.get_user(session, user) if user != ANONYMOUS else None
    return None if row is None else row.role


def require_lead(session: Session, user: str | None, action: str) -> None:
    """NotAllowed unless `user` may do a lead action (`action`: words for the message)."""
    role = role_in(session, user)
    if role == "lead":
        return
    if user == ANONYMOUS:
        raise NotAllowed(f"Log in first: {action} needs a lead.")
    who = "an annotator" if role == "annotator" else "not registered on this server"
    raise NotAllowed(f"Only a lead may {action}; {user!r} is {who}.")


def check_acts_as(session: Session, user: str | None, annotator: str, action: str) -> None:
    """NotAllowed unless `user` may label (skip, undo, ...) as `annotator`: annotators act as
    themselves only; leads may also act for others (e.g. correct someone's label)."""
    role = role_in(session, user)
    if role == "lead":
        return
    if user == ANONYMOUS:
        raise NotAllowed("Log in first to label.")
    if role is None:
        raise NotAllowed(f"{user!r} is not registered on this server: {HOW_TO_ADD}.")
    if annotator != user:
        raise NotAllowed(
            f"{user!r} may {action} only their own labels; correcting {annotator!r}'s needs a lead."
        )


def audit(
    session: Session,
    user: str | None,
    action: str,
    *,
    project: Project | tuple[int, str] | None = None,
    **detail: Any,
) -> None:
    """One audit entry inside the caller's write transaction; `project`: a Project, or
    (id, name) of one created in that transaction."""
    project_id, project_name = (
        (None, None)
        if project is None
        else project
        if isinstance(project, tuple)
        else (project.id, project.name)
    )
    people.add_audit(
        session,
        at=utcnow(),
        actor=shown(user),
        action=action,
        project_id=project_id,
        project_name=project_name,
        detail={key: value for key, value in detail.items() if value is not None},
    )


def authorize(ws: Workspace, action: str) -> None:
    """require_lead in its own read transaction (for actions that write elsewhere, e.g. imports)."""
    with read_session(ws.engine) as session:
        require_lead(session, ws.user, action)


def record(ws: Workspace, action: str, *, project: Project | None = None, **detail: Any) -> None:
    """An audit entry in its own write transaction, after the action succeeded."""
    with_write_retry(
        ws.engine, lambda session: audit(session, ws.user, action, project=project, **detail)
    )


@contextmanager
def lead_action(
    ws: Workspace, action: str, verb: str, *, project: Project | None = None, **detail: Any
) -> Iterator[dict[str, Any]]:
    """Check that the user may `verb`, run the body, then log `action` with `detail` (the body
    may add to the yielded dict). Nothing is logged when the body raises."""
    authorize(ws, verb)
    extra: dict[str, Any] = dict(detail)
    yield extra
    record(ws, action, project=project, **extra)


_EXPORTING: contextvars.ContextVar[bool] = contextvars.ContextVar("exporting", default=False)
F = TypeVar("F", bound=Callable[..., Any])


def lead_export(what: str) -> Callable[[F], F]:
    """Decorate an export function taking the project first: leads only, logged once (an export
    built from other exports, e.g. labels in both formats, is one entry)."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(project: Project, *args: Any, **kwargs: Any) -> Any:
            if _EXPORTING.get():
                return function(project, *args, **kwargs)
            token = _EXPORTING.set(True)
            try:
                with lead_action(
                    project.workspace, "export", "export", project=project, format=what
                ):
                    return function(project, *args, **kwargs)
            finally:
                _EXPORTING.reset(token)

        return wrapper  # type: ignore[return-value]

    return decorate


# ---------------------------------------------------------------- people and roles


@dataclass(frozen=True)
class Person:
    name: str
    role: str
    has_password: bool
    created_at: datetime


def set_role(ws: Workspace, name: str, role: str) -> None:
    name = validate_user_name(name)
    role = validate_role(role)

    def work(session: Session) -> None:
        require_lead(session, ws.user, "change roles")
        current = people.get_user(session, name)
        if (
            ws.user is not None
            and current is not None
            and current.role == "lead"
            and role != "lead"
            and people.lead_count(session) == 1
        ):
            raise NotAllowed(
                "The last lead cannot be made an annotator from the browser: that would open the "
                "server to everyone. Add another lead first, or use the `activelearn user` command."
            )
        people.upsert_user(session, name, role=role, now=utcnow())
        audit(session, ws.user, "set role", person=name, role=role)

    _retry_on_conflict(ws, work)


def remove_user(ws: Workspace, name: str) -> bool:
    """Remove a person (their labels stay); their log-in sessions end. True if they existed."""

    def work(session: Session) -> bool:
        require_lead(session, ws.user, "remove people")
        current = people.get_user(session, name)
        if current is None:
            return False
        if ws.user is not None and current.role == "lead" and people.lead_count(session) == 1:
            raise NotAllowed(
                "The last lead cannot be removed from the browser: that would open the server to "
                "everyone. Use the `activelearn user remove` command on the server."
            )
        people.delete_user(session, name)
        audit(session, ws.user, "remove user", person=name)
        return True

    return with_write_retry(ws.engine, work)


def roles(ws: Workspace) -> dict[str, str]:
    """{name: role} of every registered person."""
    with read_session(ws.engine) as session:
        return {row.name: row.role for row in people.list_users(session)}


def list_people(ws: Workspace) -> list[Person]:
    with read_session(ws.engine) as session:
        return [
            Person(row.name, row.role, row.password_hash is not None, row.created_at)
            for row in people.list_users(session)
        ]


def open_mode(ws: Workspace) -> bool:
    with read_session(ws.engine) as session:
        return is_open_mode(session)


def role_of(ws: Workspace, name: str | None) -> str | None:
    """`name`'s effective role now: 'lead' in open mode and for the local operator (None)."""
    with read_session(ws.engine) as session:
        return role_in(session, name)


def set_password(ws: Workspace, name: str, password: str) -> None:
    """Set a registered person's password (a lead for anyone, a person for themselves); their
    other log-in sessions end."""
    if len(password or "") < MIN_PASSWORD:
        raise InvalidAnnotator(f"a password needs at least {MIN_PASSWORD} characters")
    encoded = _password_hasher().hash(password)

    def work(session: Session) -> None:
        if name != ws.user:
            require_lead(session, ws.user, "set other people's passwords")
        row = people.get_user(session, name)
        if row is None:
            raise NotAllowed(f"{name!r} is not registered: {HOW_TO_ADD}")
        row.password_hash = encoded
        people.delete_sessions_of(session, name)
        audit(session, ws.user, "set password", person=name)

    with_write_retry(ws.engine, work)


def _retry_on_conflict(ws: Workspace, work: Any) -> Any:
    for attempt in range(3):
        try:
            return with_write_retry(ws.engine, work)
        except IntegrityError:  # a concurrent insert of the same name (PostgreSQL)
            if attempt == 2:
                raise
    return None


# ---------------------------------------------------------------- log-in


def session_hours() -> float:
    try:
        return max(0.01, float(os.environ.get(SESSION_HOURS_ENV, DEFAULT_SESSION_HOURS)))
    except ValueError:
        return DEFAULT_SESSION_HOURS


def _lock_seconds(failures: int, *, free: int = FREE_ATTEMPTS) -> int:
    over = failures - free
    if over < 0:
        return 0
    return min(MAX_LOCK_SECONDS, FIRST_LOCK_SECONDS * 2**over)


def login(
    ws: Workspace,
    name: str,
    password: str,
    *,
    client: str | None = None,
    now: datetime | None = None,
) -> str:
    """Check a password; returns a new session token (keep it in a cookie). The message never
    says which of name and password was wrong.

    Failed attempts are throttled per typed name (whether or not it exists) and, when `client`
    (e.g. the browser's IP address) is given, per client too, so that neither guessing one
    password nor trying one password on many names gets far.
    """
    key = (name or "").strip()[:200]
    now = now or utcnow()
    if not key or any(ord(char) < 32 for char in key):
        raise LoginFailed("Wrong name or password.")
    throttles = [(key, FREE_ATTEMPTS, "for this name")]
    if client:
        throttles.append((CLIENT_KEY + client[:150], FREE_CLIENT_ATTEMPTS, "from this address"))

    def reserve(session: Session) -> None:
        # Count the attempt as failed before checking it, so parallel guesses all count.
        counts = []
        for throttle_key, _free, where in throttles:
            row = people.get_throttle(session, throttle_key)
            failures = 0
            if row is not None:
                if row.locked_until is not None and row.locked_until > now:
                    wait = int((row.locked_until - now).total_seconds()) + 1
                    raise LoginThrottled(
                        f"Too many failed log-ins {where}: try again in {wait} seconds."
                    )
                if now - row.last_failure < FAILURES_FORGOTTEN_AFTER:
                    failures = row.failures
            counts.append(failures + 1)
        for (throttle_key, free, _where), failures in zip(throttles, counts, strict=True):
            lock = _lock_seconds(failures, free=free)
            people.set_throttle(
                session,
                throttle_key,
                failures=failures,
                now=now,
                locked_until=now + timedelta(seconds=lock) if lock else None,
            )

    _retry_on_conflict(ws, reserve)
    with read_session(ws.engine) as session:
        row = people.get_user(session, key) if key else None
        stored = None if row is None else row.password_hash
    hasher = _password_hasher()
    ok = False
    try:
        from argon2.exceptions import VerificationError, VerifyMismatchError

        # A dummy hash for unknown names keeps the answer time the same.
        ok = hasher.verify(stored or _dummy_hash(), password or "") and stored is not None
    except (VerifyMismatchError, VerificationError, ValueError):
        ok = False
    if not ok:
        raise LoginFailed("Wrong name or password.")
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=session_hours())

    def succeed(session: Session) -> None:
        people.clear_throttle(session, key)
        if client:
            # Only this attempt is taken back: a valid account must not wipe a client's count.
            row = people.get_throttle(session, CLIENT_KEY + client[:150])
            if row is not None and row.failures > 0:
                row.failures -= 1
        people.delete_expired_sessions(session, now)
        people.add_session(
            session,
            token_hash=_token_hash(token),
            name=key,
            kind="password",
            now=now,
            expires_at=expires,
        )
        if stored is not None and hasher.check_needs_rehash(stored):
            user = people.get_user(session, key)
            if user is not None:
                user.password_hash = hasher.hash(password)

    with_write_retry(ws.engine, succeed)
    return token


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(_password_hasher().hash(secrets.token_hex(16)))
    return _DUMMY[0]


def open_session(ws: Workspace, name: str) -> str:
    """Open mode: a token remembering a typed name across reloads (valid while no lead exists)."""
    name = validate_user_name(name)
    token = secrets.token_urlsafe(32)
    now = utcnow()

    def work(session: Session) -> None:
        if not is_open_mode(session):
            raise NotAllowed("This server has leads: log in with your name and password.")
        people.add_session(
            session,
            token_hash=_token_hash(token),
            name=name,
            kind="open",
            now=now,
            expires_at=now + timedelta(days=OPEN_SESSION_DAYS),
        )

    with_write_retry(ws.engine, work)
    return token


def session_user(ws: Workspace, token: str | None, *, now: datetime | None = None) -> str | None:
    """The user a session token belongs to; None when unknown, expired or logged out, when an
    open-mode token meets a server that has leads, or when its account was removed."""
    if not isinstance(token, str) or not token or len(token) > 200:
        return None
    now = now or utcnow()
    with read_session(ws.engine) as session:
        row = people.get_session(session, _token_hash(token))
        if row is None or row.expires_at <= now:
            return None
        if row.kind == "open":
            return row.user_name if is_open_mode(session) else None
        return row.user_name if people.get_user(session, row.user_name) is not None else None


def logout(ws: Workspace, token: str | None) -> None:
    if token:
        with_write_retry(
            ws.engine, lambda session: people.delete_session(session, _token_hash(token))
        )


# ---------------------------------------------------------------- the audit log

AUDIT_COLUMNS = ["at", "actor", "action", "project", "detail"]


def audit_log(ws: Workspace, *, project: Project | None = None, limit: int | None = None) -> Any:
    """The audit log, newest first, as a DataFrame (at, actor, action, project, detail)."""
    import json

    with read_session(ws.engine) as session:
        require_lead(session, ws.user, "read the audit log")
        rows = people.audit_entries(
            session, project_id=None if project is None else project.id, limit=limit
        )
        records = [
            (
                row.at,
                row.actor,
                row.action,
                row.project_name or "",
                json.dumps(row.detail or {}, sort_keys=True, default=str),
            )
            for row in rows
        ]
    return pd.DataFrame(records, columns=AUDIT_COLUMNS)


def audit_csv_bytes(ws: Workspace, *, project: Project | None = None) -> bytes:
    """The audit log as CSV. Names, paths and project names are user text: a cell that a
    spreadsheet would run as a formula (=, +, -, @ first) gets a leading apostrophe."""
    frame = audit_log(ws, project=project)
    for column in ("actor", "action", "project", "detail"):
        frame[column] = frame[column].map(_inert_cell)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


def _inert_cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
