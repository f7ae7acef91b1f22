"""The one source of "now" (naive UTC); tests move it forward instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

Now = Callable[[], datetime]


def system_utcnow() -> datetime:
    """Naive UTC: stored the same way on SQLite and PostgreSQL."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


_now: Now = system_utcnow


def utcnow() -> datetime:
    """The current time as every service sees it (naive UTC)."""
    return _now()


@contextmanager
def using(now: Now) -> Iterator[None]:
    """Every `utcnow()` in this process calls `now` inside the block (for tests)."""
    global _now
    previous, _now = _now, now
    try:
        yield
    finally:
        _now = previous


@contextmanager
def advanced(seconds: float) -> Iterator[None]:
    """This process sees time `seconds` ahead of the system clock inside the block.

    Ages heartbeats and leases without sleeping: the other side (a worker process, say) keeps
    writing system time, and this side reads it as that much older.
    """
    offset = timedelta(seconds=seconds)
    with using(lambda: system_utcnow() + offset):
        yield
