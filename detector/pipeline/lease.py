"""Leases: work on a row that one worker holds at a time, kept in the row itself.

A lease is a timestamp column of the row, its holder's last sign of life (the
``stamp``): a chunk's ``updated_at``, a job's ``started_at`` while it is planned
and ``tracked_at`` while it is tracked, a download's, a render's and an
analytics run's ``progress_at``. The row's other columns say what the holder is doing (a
status). Each step is one conditional UPDATE whose row count says whether it
took, so of two workers (or a worker and the watchdog) that try at once exactly
one does: PostgreSQL re-checks a concurrent update's ``WHERE`` against the
committed row (READ COMMITTED) and SQLite runs one writer at a time.

- `take`: start holding the row (``stamp`` set to now), while ``where`` holds and,
  given a time to live, while the lease is `expired` (its last holder died).
- `renew`: record progress (``stamp`` set to now), only while ``where`` holds: a
  holder whose job was stopped or whose lease was taken from it learns so here.
- `release`: end the holding, with the row's new state (done, failed, pending).
- `expired`: the SQL clause of a lease whose holder showed no life for its time to
  live, by which the watchdog finds work to resend and a new holder takes over;
  `lapsed` is the same judgement of a value already read.

Every step runs in the caller's transaction; the caller commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, or_, update
from sqlalchemy.orm import Session, scoped_session

from detector.models import utcnow

# A session, or the thread's scoped session (db.session).
AnySession = Session | scoped_session[Session]


def expired(stamp: Any, ttl: timedelta, now: datetime | None = None) -> ColumnElement[bool]:
    """The lease whose last sign of life is the column (or expression) ``stamp`` has
    lapsed: never taken (null), or not renewed within ``ttl`` of ``now``."""
    return or_(stamp.is_(None), stamp < (now or utcnow()) - ttl)


def lapsed(stamp: datetime | None, ttl: timedelta, now: datetime | None = None) -> bool:
    """`expired` for a stamp already read: None, or older than ``ttl``."""
    return stamp is None or stamp < (now or utcnow()) - ttl


def remaining(stamp: datetime | None, ttl: timedelta, now: datetime | None = None) -> timedelta:
    """How long until a lease stamped ``stamp`` lapses (zero or less: it has)."""
    now = now or utcnow()
    return (stamp or now) + ttl - now


def _set(session: AnySession, model: Any, where: tuple[Any, ...], values: dict[str, Any]) -> bool:
    result = session.execute(
        update(model).where(*where).values(**values).execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def take(
    session: AnySession,
    model: Any,
    *where: Any,
    stamp: Any,
    ttl: timedelta | None = None,
    count: Any = None,
    now: datetime | None = None,
    **values: Any,
) -> bool:
    """Take the lease of the one row of ``model`` that ``where`` selects; whether this
    call took it.

    One UPDATE sets ``stamp`` to ``now`` and the columns ``values`` (and adds one
    to the column ``count``, a delivery counter, when given), where ``where``
    holds and, with ``ttl``, the lease is `expired`. Without ``ttl`` the row's own
    state in ``where`` decides (a queued render, a chunk not done).
    """
    now = now or utcnow()
    if ttl is not None:
        where = (*where, expired(stamp, ttl, now))
    if count is not None:
        values[count.key] = count + 1
    return _set(session, model, where, {stamp.key: now, **values})


def renew(
    session: AnySession, model: Any, *where: Any, stamp: Any, now: datetime | None = None, **values: Any
) -> bool:
    """Record the holder's progress: ``stamp`` to ``now`` and ``values``, in one UPDATE,
    only while ``where`` holds; whether it did. False: the holder lost the row (the
    job stopped, the row is gone, another took it) and stops its work."""
    return _set(session, model, where, {stamp.key: now or utcnow(), **values})


def release(
    session: AnySession, model: Any, *where: Any, stamp: Any, now: datetime | None = None, **values: Any
) -> bool:
    """End the holding: the row's new state ``values`` and its last sign of life (``stamp``
    to ``now``) in one UPDATE, only while ``where`` holds; whether it did."""
    return _set(session, model, where, {stamp.key: now or utcnow(), **values})
