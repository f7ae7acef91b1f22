"""Queries over users, log-in sessions, the failed-login throttle and the audit log.

Functions take a Session and never commit (the caller owns the transaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import AuditEntry, LoginSession, LoginThrottle, User


def any_lead(session: Session) -> bool:
    return session.scalar(select(User.name).where(User.role == "lead").limit(1)) is not None


def lead_count(session: Session) -> int:
    return len(session.scalars(select(User.name).where(User.role == "lead")).all())


def get_user(session: Session, name: str) -> User | None:
    return session.get(User, name)


def list_users(session: Session) -> list[User]:
    """Leads first, then annotators, each by name."""
    users = session.scalars(select(User).order_by(User.name))
    return sorted(users, key=lambda user: user.role != "lead")


def upsert_user(session: Session, name: str, *, role: str, now: datetime) -> User:
    user = session.get(User, name)
    if user is None:
        user = User(name=name, role=role, password_hash=None, created_at=now)
        session.add(user)
    else:
        user.role = role
    session.flush()
    return user


def delete_user(session: Session, name: str) -> bool:
    user = session.get(User, name)
    if user is None:
        return False
    session.delete(user)
    delete_sessions_of(session, name)
    session.flush()
    return True


# ---------------------------------------------------------------- sessions


def add_session(
    session: Session, *, token_hash: str, name: str, kind: str, now: datetime, expires_at: datetime
) -> None:
    session.add(
        LoginSession(
            token_hash=token_hash, user_name=name, kind=kind, created_at=now, expires_at=expires_at
        )
    )
    session.flush()


def get_session(session: Session, token_hash: str) -> LoginSession | None:
    return session.get(LoginSession, token_hash)


def delete_session(session: Session, token_hash: str) -> None:
    session.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash))


def delete_sessions_of(session: Session, name: str) -> None:
    session.execute(delete(LoginSession).where(LoginSession.user_name == name))


def delete_expired_sessions(session: Session, now: datetime) -> None:
    session.execute(delete(LoginSession).where(LoginSession.expires_at <= now))


# ---------------------------------------------------------------- throttle


def get_throttle(session: Session, name: str) -> LoginThrottle | None:
    return session.get(LoginThrottle, name)


def set_throttle(
    session: Session, name: str, *, failures: int, now: datetime, locked_until: datetime | None
) -> None:
    row = session.get(LoginThrottle, name)
    if row is None:
        session.add(
            LoginThrottle(name=name, failures=failures, last_failure=now, locked_until=locked_until)
        )
    else:
        row.failures = failures
        row.last_failure = now
        row.locked_until = locked_until
    session.flush()


def clear_throttle(session: Session, name: str) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.name == name))


# ---------------------------------------------------------------- audit log


def add_audit(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    project_id: int | None,
    project_name: str | None,
    detail: dict[str, Any],
) -> None:
    session.add(
        AuditEntry(
            at=at,
            actor=actor,
            action=action,
            project_id=project_id,
            project_name=project_name,
            detail=detail,
        )
    )
    session.flush()


def audit_entries(
    session: Session, *, project_id: int | None = None, limit: int | None = None
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    if project_id is not None:
        query = query.where(AuditEntry.project_id == project_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
