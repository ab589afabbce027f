"""Video storage that does not fill up: retention of stored videos, and each user's
storage use against a quota.

- ``VIDEO_RETENTION_DAYS``: a finished job's upload (``storage_key``) and annotated
  render (its `JobRender`'s ``key``) are deleted that long after the job ended; its detections,
  tracks and exports stay. The job's ``video_expires_at`` is written when it
  finishes (`set_expiry`), or by the sweep for jobs that finished before retention
  was set. `sweep_videos`, run by the watchdog, deletes the files of expired jobs
  and writes ``video_deleted_at``. Retention off (0) keeps everything: expiries
  not reached yet are dropped.
- ``STORAGE_QUOTA_MB`` counts the ``video_bytes`` of a user's jobs whose videos are
  not deleted and their renders' ``bytes`` (detector.pipeline.quota): the sweep takes the
  bytes it deletes off the owner's count, and `measure_videos` records, and counts,
  the sizes of videos stored before jobs recorded them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from celery.utils.log import get_task_logger
from sqlalchemy import ColumnElement, CursorResult, and_, or_, select, update

from detector.config import Settings, current_settings
from detector.db import db
from detector.models import FINISHED_STATUSES, Job, JobRender, RenderStatus, utcnow
from detector.pipeline import quota
from detector.storage import StorageError, VideoStorage

log = get_task_logger(__name__)

# Retention this long or longer is "forever" (an expiry past year 9999 cannot be stored).
MAX_RETENTION_DAYS = 1_000_000
# Jobs each step of a sweep looks at per run: a large backlog goes over a few runs.
SWEEP_BATCH = 500

_FINISHED = sorted(FINISHED_STATUSES)
_RENDERING = [RenderStatus.QUEUED, RenderStatus.RENDERING]
# The job has a render queued or being drawn.
_RENDER_UNDER_WAY = (
    select(JobRender.job_id).where(JobRender.job_id == Job.id, JobRender.status.in_(_RENDERING)).exists()
)


def retention(settings: Settings) -> timedelta | None:
    """How long a finished job's videos are kept (VIDEO_RETENTION_DAYS); None: forever."""
    days = settings.video_retention_days
    if not 0 < days < MAX_RETENTION_DAYS:  # also 0, negative and NaN
        return None
    return timedelta(days=days)


def expiry(finished_at: datetime | None, settings: Settings | None = None) -> datetime | None:
    """When the videos of a job that finished at ``finished_at`` are deleted; None: never."""
    keep = retention(settings or current_settings())
    return finished_at + keep if keep is not None and finished_at is not None else None


def set_expiry(job: Job) -> None:
    """On a job that has just finished: when its videos will be deleted (none stored: never)."""
    job.video_expires_at = expiry(job.finished_at) if job.storage_key else None


# --- The sweep --------------------------------------------------------------------------


def _expired(now: datetime) -> ColumnElement[bool]:
    """A job whose videos may be deleted now: past its expiry, not deleted yet, finished,
    and no annotated video being drawn from it."""
    return and_(
        Job.video_deleted_at.is_(None),
        Job.video_expires_at <= now,
        Job.status.in_(_FINISHED),
        ~_RENDER_UNDER_WAY,
    )


def sweep_videos(storage: VideoStorage, now: datetime | None = None) -> int:
    """Delete the stored videos of finished jobs past their expiry; the jobs that lost them.

    Safe to run twice, and in two workers at once: each job is claimed by a
    conditional UPDATE (``video_deleted_at`` still null, still expired, still
    finished, no render under way) in the transaction that then deletes its files,
    takes their bytes off the owner's storage count and commits. Only one run's
    claim matches; a run that dies before its commit leaves the job to the next
    run, and a file already gone is no error. A render asked for while the claim
    waited for the job's row (a render request locks it) is seen after the claim,
    and the claim is undone.
    """
    settings = current_settings()
    now = now or utcnow()
    keep = retention(settings)
    session = db.session
    if keep is None:
        # Kept forever now: expiries not reached yet no longer hold (looked for first,
        # so that a sweep with nothing to do writes nothing).
        dated = and_(Job.video_deleted_at.is_(None), Job.video_expires_at.is_not(None))
        if session.scalar(select(Job.id).where(dated).limit(1)) is not None:
            session.execute(
                update(Job)
                .where(dated)
                .values(video_expires_at=None)
                .execution_options(synchronize_session=False)
            )
        session.commit()
        return 0
    _date_finished_jobs(keep)
    due = session.scalars(
        select(Job.id).where(_expired(now)).order_by(Job.video_expires_at).limit(SWEEP_BATCH)
    ).all()
    session.rollback()
    return sum(_delete_videos(job_id, storage, now) for job_id in due)


def _date_finished_jobs(keep: timedelta) -> None:
    """Write the expiry of finished jobs that have none: those that ended before
    retention was set (or while it was off)."""
    session = db.session
    undated = session.execute(
        select(Job.id, Job.finished_at)
        .where(
            Job.video_expires_at.is_(None),
            Job.video_deleted_at.is_(None),
            Job.finished_at.is_not(None),
            Job.status.in_(_FINISHED),
            Job.storage_key != "",
        )
        .limit(SWEEP_BATCH)
    ).all()
    for job_id, finished_at in undated:
        assert finished_at is not None  # selected so
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.video_expires_at.is_(None))
            .values(video_expires_at=finished_at + keep)
            .execution_options(synchronize_session=False)
        )
    session.commit()


def _delete_videos(job_id: str, storage: VideoStorage, now: datetime) -> int:
    """Claim one expired job and delete its files, in one transaction; 1 if this run did."""
    session = db.session
    try:
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, _expired(now))
            .values(video_deleted_at=now)
            .execution_options(synchronize_session=False)
        )
        if cast("CursorResult[Any]", claimed).rowcount != 1 or _render_asked(session, job_id):
            session.rollback()  # another sweep, a delete or a render request came first
            return 0
        job = session.execute(
            select(
                Job.owner_id,
                Job.storage_key,
                JobRender.key.label("render_key"),
                Job.video_bytes,
                JobRender.bytes.label("render_bytes"),
                Job.video_expires_at,
            )
            .outerjoin(JobRender, JobRender.job_id == Job.id)
            .where(Job.id == job_id)
        ).one()
        freed = (job.video_bytes or 0) + (job.render_bytes or 0)
        quota.free(session, job.owner_id, freed)
        for key in (job.storage_key, job.render_key):
            if key:
                storage.delete(key)  # no error when it is already gone
        session.commit()
    except OSError:
        session.rollback()
        log.exception("job=%s its expired videos could not be deleted; the next sweep tries again", job_id)
        return 0
    log.info(
        "job=%s stored videos deleted (expired %s): upload %s, annotated video %s; %s freed",
        job_id,
        job.video_expires_at.isoformat(),
        job.storage_key or "none",
        job.render_key or "none",
        f"{freed / quota.MB:.1f} MB",
    )
    return 1


def _render_asked(session: quota.AnySession, job_id: str) -> bool:
    """Whether the job has a render queued or being drawn, as committed now: a statement
    of its own, since PostgreSQL re-checks a claim that waited for a lock against the
    job's row only, not against job_renders."""
    return session.scalar(select(_RENDER_UNDER_WAY).where(Job.id == job_id)) is True


def measure_videos(storage: VideoStorage) -> int:
    """Record the sizes of stored videos and renders that have none (kept before jobs
    recorded them), and add them to their owners' storage count; the jobs measured.

    Each size is written by an UPDATE that matches only while the job's size is
    still unrecorded and its videos not deleted, and counted in that transaction
    only if it matched: two runs at once, a render kept meanwhile, or a deletion
    meanwhile never make a size count twice or after its video is gone.
    """
    session = db.session
    unmeasured = session.execute(
        select(
            Job.id,
            Job.owner_id,
            Job.storage_key,
            JobRender.key.label("render_key"),
            Job.video_bytes,
            JobRender.bytes.label("render_bytes"),
        )
        .outerjoin(JobRender, JobRender.job_id == Job.id)
        .where(
            Job.video_deleted_at.is_(None),
            or_(
                and_(Job.video_bytes.is_(None), Job.storage_key != ""),
                and_(JobRender.bytes.is_(None), JobRender.key.is_not(None)),
            ),
        )
        .limit(SWEEP_BATCH)
    ).all()
    session.rollback()
    for job in unmeasured:
        # Each size: its table, its row, its column, and the file's size.
        sizes: list[tuple[Any, Any, Any, int]] = []
        if job.video_bytes is None and job.storage_key:
            sizes.append((Job, Job.id == job.id, Job.video_bytes, _size(storage, job.storage_key)))
        if job.render_bytes is None and job.render_key:
            sizes.append(
                (JobRender, JobRender.job_id == job.id, JobRender.bytes, _size(storage, job.render_key))
            )
        with db.transaction() as own:
            # The job's row first: a deletion or a retention sweep that marks its videos
            # deleted waits for this transaction, or this one sees them deleted.
            kept = own.scalar(
                select(Job.id).where(Job.id == job.id, Job.video_deleted_at.is_(None)).with_for_update()
            )
            if kept is None:
                continue
            for model, row, column, size in sizes:
                recorded = own.execute(
                    update(model)
                    .where(row, column.is_(None))
                    .values({column: size})
                    .execution_options(synchronize_session=False)
                )
                if cast("CursorResult[Any]", recorded).rowcount == 1:
                    quota.count(own, job.owner_id, size)
    return len(unmeasured)


def _size(storage: VideoStorage, key: str) -> int:
    """A stored file's size; 0 when it is gone."""
    try:
        return storage.size(key)
    except (StorageError, OSError):
        return 0
