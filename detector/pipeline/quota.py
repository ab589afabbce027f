"""Each user's storage against STORAGE_QUOTA_MB, kept so that concurrent work cannot
pass it.

A user's row holds two counters: ``storage_used_bytes``, the bytes of their stored
videos and annotated videos (the ``video_bytes`` of their jobs whose videos are not
deleted, and those jobs' renders' ``bytes``), and ``storage_reserved_bytes``, the bytes set aside
for videos being stored now, one `StorageReservation` row each. Both change only in
the transactions that add or remove those bytes, never by summing over jobs.

- `reserve` checks and takes room in one conditional UPDATE of the user's row
  (``... WHERE used + reserved + n <= quota``): of two uploads at once that do
  not both fit, exactly one gets the room, on PostgreSQL (which re-checks the
  WHERE of a concurrent update against the committed row) and on SQLite (one
  writer at a time). `grow` takes more for a download as its bytes arrive.
- `settle`, in the transaction that records the stored video, turns the
  reservation into used bytes; bytes beyond what was reserved must fit too.
- `release` gives the room back when the video is not kept; `free` and
  `release_job` run where videos and jobs are deleted.
- `sweep_reservations` (the watchdog) releases the reservations of processes that
  died before settling or releasing theirs.

`stored_bytes` is the sum over the user's jobs, to check the counter against, and
`reconcile` sets the counter to it.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from celery.utils.log import get_task_logger
from sqlalchemy import CursorResult, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, scoped_session

from detector.config import Settings, current_settings
from detector.db import db
from detector.models import Job, JobRender, JobStatus, RenderStatus, StorageReservation, User, utcnow

log = get_task_logger(__name__)

# A session, or the thread's scoped session (db.session).
AnySession = Session | scoped_session[Session]

MB = 1024 * 1024
# A reservation not settled nor released this long after it was made or last grown,
# and whose job is not downloading or rendering, was left by a process that died:
# an upload is probed within its request (API_TIMEOUT).
RESERVATION_LIFETIME = timedelta(hours=1)
# Reservations the sweep looks at per run.
SWEEP_BATCH = 500

_STORED = (
    select(func.coalesce(func.sum(func.coalesce(Job.video_bytes, 0) + func.coalesce(JobRender.bytes, 0)), 0))
    .select_from(Job)
    .outerjoin(JobRender, JobRender.job_id == Job.id)
    .where(Job.owner_id == bindparam("owner_id"), Job.video_deleted_at.is_(None))
)


class NoRoom(Exception):
    """The bytes would take the user past STORAGE_QUOTA_MB; the message says so, in the
    words a refused upload gets."""


@dataclass
class Reservation:
    """Room held for one video; ``bytes`` is what the row holds now."""

    id: str
    owner_id: int
    job_id: str | None
    bytes: int
    # Set once growing ahead did not fit: near the quota, grow by what is needed only.
    tight: bool = False


def quota_bytes(settings: Settings) -> int | None:
    """Each user's storage quota in bytes (STORAGE_QUOTA_MB); None: unlimited."""
    megabytes = settings.storage_quota_mb
    if not 0 < megabytes < math.inf:
        return None
    return int(megabytes * MB)


def _megabytes(size: int) -> str:
    return f"{size / MB:.1f} MB"


def _message(used: int, quota: int, incoming: int | None, *, partial: bool = False) -> str:
    detail = ""
    if incoming is not None:
        detail = f", this video is {'at least ' if partial else ''}{_megabytes(incoming)}"
    return (
        f"storage quota {round(quota / MB, 3):g} MB exceeded: {_megabytes(used)} used{detail}; "
        f"deleting jobs frees their videos"
    )


def quota_refusal(used: int, quota: int | None, incoming: int | None = None) -> str | None:
    """Why keeping ``incoming`` more bytes would take a user who has ``used`` past
    ``quota``; None when it fits. Without ``incoming`` (a video of unknown size): why
    the user has no room left (at or over the quota), or None."""
    if quota is None:
        return None
    if (used < quota) if incoming is None else (used + incoming <= quota):
        return None
    return _message(used, quota, incoming)


def storage_used(owner_id: int) -> int:
    """Bytes of stored video the user has: uploads and annotated videos not deleted yet."""
    return int(db.session.scalar(select(User.storage_used_bytes).where(User.id == owner_id)) or 0)


def storage_taken(owner_id: int) -> int:
    """The user's stored bytes and those reserved for videos being stored now."""
    row = db.session.execute(
        select(User.storage_used_bytes, User.storage_reserved_bytes).where(User.id == owner_id)
    ).first()
    return 0 if row is None else int(row[0] + row[1])


def stored_bytes(owner_id: int) -> int:
    """The sum of the user's jobs' ``video_bytes`` and their renders' ``bytes``, of jobs
    whose videos are not deleted: what ``storage_used_bytes`` counts, computed afresh."""
    return int(db.session.scalar(_STORED, {"owner_id": owner_id}) or 0)


def reconcile(owner_id: int) -> int:
    """Set the user's used bytes to `stored_bytes` (a counter changed by hand, say); the
    bytes now counted. One statement, after locking the user's row on PostgreSQL, so
    that a write that changes both a job and the counter lands wholly before or after."""
    with db.transaction() as session:
        session.execute(select(User.id).where(User.id == owner_id).with_for_update())
        session.execute(
            update(User)
            .where(User.id == owner_id)
            .values(storage_used_bytes=_STORED.params(owner_id=owner_id).scalar_subquery())
            .execution_options(synchronize_session=False)
        )
        used = session.scalar(select(User.storage_used_bytes).where(User.id == owner_id))
    return int(used or 0)


# --- Changes of the counters, each in the caller's transaction -----------------------


def _rowcount(result: Any) -> int:
    return cast("CursorResult[Any]", result).rowcount


def _change(
    session: AnySession, owner_id: int, *, used: int = 0, reserved: int = 0, quota: int | None
) -> bool:
    """Add ``used`` and ``reserved`` (either may be negative) to the user's counters in
    one UPDATE; when that takes more room (their sum is positive) and ``quota`` is set,
    only if the user stays within it. Whether it was done."""
    if used == 0 and reserved == 0:
        return True
    statement = (
        update(User)
        .where(User.id == owner_id)
        .values(
            storage_used_bytes=User.storage_used_bytes + used,
            storage_reserved_bytes=User.storage_reserved_bytes + reserved,
        )
        .execution_options(synchronize_session=False)
    )
    if quota is not None and used + reserved > 0:
        statement = statement.where(
            User.storage_used_bytes + User.storage_reserved_bytes + (used + reserved) <= quota
        )
    return _rowcount(session.execute(statement)) == 1


def _refusal(
    session: AnySession, owner_id: int, quota: int, incoming: int, *, held: int, partial: bool = False
) -> str:
    """The refusal of ``incoming`` bytes: "used" counts the user's stored bytes and
    what others hold for videos being stored, not the ``held`` bytes of this one."""
    row = session.execute(
        select(User.storage_used_bytes, User.storage_reserved_bytes).where(User.id == owner_id)
    ).first()
    used = 0 if row is None else int(row[0] + row[1]) - held
    return _message(max(used, 0), quota, incoming, partial=partial)


def _take(session: AnySession, reservation_id: str, size: int) -> bool:
    """Delete the reservation row if it still holds ``size`` bytes; whether it did. The
    caller takes its bytes off the user's reserved counter in the same transaction."""
    taken = session.execute(
        delete(StorageReservation)
        .where(StorageReservation.id == reservation_id, StorageReservation.bytes == size)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(taken) == 1


def settle(session: AnySession, reservation: Reservation, stored: int, *, freed: int = 0) -> None:
    """In the transaction that records a stored video of ``stored`` bytes (which frees
    ``freed``: the annotated video it replaces), turn the reservation into used bytes.
    The reserved bytes always suffice; more than them must fit in the quota, as must
    all of it when the reservation was released meanwhile (its holder looked dead).

    Raises:
        NoRoom: it does not fit; the caller rolls its transaction back, then
            releases the reservation.
    """
    held = reservation.bytes if _take(session, reservation.id, reservation.bytes) else 0
    growth = stored - freed
    quota = quota_bytes(current_settings()) if growth > held else None
    if not _change(session, reservation.owner_id, used=growth, reserved=-held, quota=quota):
        assert quota is not None  # only a quota refuses
        raise NoRoom(_refusal(session, reservation.owner_id, quota, stored, held=held))


def try_settle(session: AnySession, reservation: Reservation, stored: int, *, freed: int = 0) -> str | None:
    """`settle`, or, when the video does not fit, roll the transaction back and return
    the refusal (the caller then deletes the video and releases the reservation)."""
    try:
        settle(session, reservation, stored, freed=freed)
    except NoRoom as exc:
        session.rollback()
        return str(exc)
    return None


def free(session: AnySession, owner_id: int, size: int) -> None:
    """Take ``size`` bytes of deleted videos off the user's used bytes."""
    _change(session, owner_id, used=-size, quota=None)


def count(session: AnySession, owner_id: int, size: int) -> None:
    """Add ``size`` bytes of stored videos found unmeasured to the user's used bytes."""
    _change(session, owner_id, used=size, quota=None)


def _release_rows(session: AnySession, rows: Any) -> tuple[int, int]:
    """Release reservation rows (id, owner_id, bytes) that still hold what was read; how
    many were released, and their bytes."""
    released = freed = 0
    for reservation_id, owner_id, size in rows:
        if _take(session, reservation_id, size):
            _change(session, owner_id, reserved=-size, quota=None)
            released += 1
            freed += size
    return released, freed


def _job_rows(session: AnySession, job_id: str) -> Any:
    return session.execute(
        select(StorageReservation.id, StorageReservation.owner_id, StorageReservation.bytes).where(
            StorageReservation.job_id == job_id
        )
    ).all()


def release_job(session: AnySession, job_id: str) -> int:
    """Release every reservation held for the job (it failed, was stopped or deleted);
    the bytes released."""
    return _release_rows(session, _job_rows(session, job_id))[1]


def forget_job(session: AnySession, job_id: str) -> None:
    """In the transaction that deletes a job: take its stored bytes off its owner's
    count and release its reservations. Its videos are first marked deleted by an
    UPDATE that matches only if they were not already, so a retention sweep at the
    same moment and this never both free them."""
    marked = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.video_deleted_at.is_(None))
        .values(video_deleted_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if _rowcount(marked) == 1:
        owner_id, video, render = session.execute(
            select(Job.owner_id, Job.video_bytes, JobRender.bytes)
            .outerjoin(JobRender, JobRender.job_id == Job.id)
            .where(Job.id == job_id)
        ).one()
        free(session, owner_id, (video or 0) + (render or 0))
    release_job(session, job_id)


# --- Reservations, each in a transaction of its own ---------------------------------


def reserve(owner_id: int, size: int, *, job_id: str | None = None) -> Reservation:
    """Set ``size`` bytes aside for a video the user is storing, checking the quota and
    taking the room in one conditional UPDATE. With ``job_id`` (a download or a
    render), the job's earlier reservations, left by a run that died, are released
    in the same transaction and their bytes count as free for this one.

    Raises:
        NoRoom: the user has not ``size`` bytes left.
    """
    reservation = Reservation(uuid.uuid4().hex, owner_id, job_id, size)
    quota = quota_bytes(current_settings())
    with db.transaction() as session:
        if job_id is not None:
            _release_rows(session, _job_rows(session, job_id))
        if not _change(session, owner_id, reserved=size, quota=quota):
            assert quota is not None
            raise NoRoom(_refusal(session, owner_id, quota, size, held=0))
        session.execute(
            insert(StorageReservation).values(
                id=reservation.id,
                owner_id=owner_id,
                job_id=job_id,
                bytes=size,
                expires_at=utcnow() + RESERVATION_LIFETIME,
            )
        )
    return reservation


def grow(reservation: Reservation, size: int, *, ahead: int = 0, whole: bool = True) -> None:
    """Hold at least ``size`` bytes, for a download as its bytes arrive: nothing to do
    while the reservation holds that much; otherwise ``size + ahead`` if that fits
    (fewer writes), else exactly ``size``. ``whole``: ``size`` is the video's full
    size (Content-Length), not what arrived so far.

    Raises:
        NoRoom: ``size`` bytes do not fit.
    """
    if size <= reservation.bytes:
        return
    if ahead > 0 and not reservation.tight:
        try:
            _grow_to(reservation, size + ahead, size, whole)
            return
        except NoRoom:
            reservation.tight = True
    _grow_to(reservation, size, size, whole)


def _grow_to(reservation: Reservation, target: int, needed: int, whole: bool) -> None:
    quota = quota_bytes(current_settings())
    with db.transaction() as session:
        moved = session.execute(
            update(StorageReservation)
            .where(StorageReservation.id == reservation.id, StorageReservation.bytes == reservation.bytes)
            .values(bytes=target, expires_at=utcnow() + RESERVATION_LIFETIME)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(moved) == 1:
            added, held = target - reservation.bytes, reservation.bytes
        else:  # released by the sweep meanwhile: hold it all again
            session.execute(
                insert(StorageReservation).values(
                    id=reservation.id,
                    owner_id=reservation.owner_id,
                    job_id=reservation.job_id,
                    bytes=target,
                    expires_at=utcnow() + RESERVATION_LIFETIME,
                )
            )
            added, held = target, 0
        if not _change(session, reservation.owner_id, reserved=added, quota=quota):
            assert quota is not None
            raise NoRoom(_refusal(session, reservation.owner_id, quota, needed, held=held, partial=not whole))
    reservation.bytes = target


def release(reservation: Reservation, session: AnySession | None = None) -> None:
    """Give the reservation's room back (its video is not kept); nothing when it was
    settled or released already. In ``session``'s transaction when given, else in one
    of its own."""
    if session is not None:
        _release_rows(session, [(reservation.id, reservation.owner_id, reservation.bytes)])
        return
    with db.transaction() as own:
        _release_rows(own, [(reservation.id, reservation.owner_id, reservation.bytes)])


def reserve_render(job_id: str) -> Reservation:
    """Reserve room for the job's annotated video before it is drawn. Its size is not
    known until the end: the estimate is the size of the video it is drawn from (the
    same frames, re-encoded); `settle` checks the real size when the render is kept.

    Raises:
        NoRoom: not even the estimate fits.
    """
    row = db.session.execute(select(Job.owner_id, Job.video_bytes).where(Job.id == job_id)).one()
    db.session.rollback()
    return reserve(row.owner_id, row.video_bytes or 0, job_id=job_id)


def sweep_reservations(now: datetime | None = None) -> int:
    """Release reservations left by processes that died before settling or releasing
    them: past their ``expires_at``, and not held for a job that is still downloading
    or rendering (a live download or render keeps its own; once the watchdog fails
    it, its reservation goes). The reservations released.

    Each is released by a delete that matches its id and bytes, in the transaction
    that takes its bytes off the user's counter, so a holder that settles, grows or
    releases it at the same moment and the sweep never both count it.
    """
    now = now or utcnow()
    session = db.session
    downloading = (
        select(Job.id)
        .where(Job.id == StorageReservation.job_id, Job.status == JobStatus.DOWNLOADING)
        .exists()
    )
    rendering = (
        select(JobRender.job_id)
        .where(
            JobRender.job_id == StorageReservation.job_id,
            JobRender.status.in_([RenderStatus.QUEUED, RenderStatus.RENDERING]),
        )
        .exists()
    )
    holding = or_(downloading, rendering)
    stale = session.execute(
        select(
            StorageReservation.id,
            StorageReservation.owner_id,
            StorageReservation.job_id,
            StorageReservation.bytes,
        )
        .where(StorageReservation.expires_at <= now, ~holding)
        .limit(SWEEP_BATCH)
    ).all()
    session.rollback()
    released = 0
    for reservation_id, owner_id, job_id, size in stale:
        with db.transaction() as own:
            if not _release_rows(own, [(reservation_id, owner_id, size)])[0]:
                continue  # settled, grown or released meanwhile
        released += 1
        log.warning(
            "storage reservation of %d bytes for user %s (job %s) released: its holder ended without "
            "settling it",
            size,
            owner_id,
            job_id or "not made",
        )
    return released
