"""Sending work to the queues, and ending jobs: used by the API and the tasks.

Several processes can end the same job at once: the last chunk's worker and the
chord both send ``merge_chunks``, a chunk fails while another finishes, the owner
cancels while the job merges, the watchdog gives up on it. Every change of a
job's state is one compare-and-set, ``UPDATE jobs SET status = … WHERE id = …
AND status IN (…)`` (`change_status`), and the row count says whether this
caller's change took. Only the caller whose update took sends the job's webhook
event, admits its owner's next waiting job, revokes its tasks and counts it in
the metrics (`end_job`); the others find the job ended and do nothing.
PostgreSQL re-checks a concurrent update's ``WHERE`` against the committed row
(READ COMMITTED) and SQLite runs one writer at a time, so on both exactly one of
two racing changes takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery
from flask import current_app
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from detector.config import current_settings
from detector.db import db
from detector.models import FINISHED_STATUSES, WAIT_SLOT, FrameDetections, Job, JobStatus, utcnow
from detector.observability import metrics
from detector.pipeline.names import PROCESS_VIDEO, job_task_ids, process_video_task_id
from detector.pipeline.retention import expiry
from detector.pipeline.webhooks import job_ended

log = logging.getLogger(__name__)

#: The states a job can still leave.
UNFINISHED = (JobStatus.DOWNLOADING, JobStatus.QUEUED, JobStatus.PROCESSING)


def _celery() -> Celery:
    return current_app.extensions["celery"]


def send_process_video(job_id: str) -> None:
    """Send ``process_video(job_id)`` to the processor queue (after the job is committed).

    If the broker cannot take it, the job stays queued and the watchdog sends it again.
    """
    try:
        _celery().send_task(PROCESS_VIDEO, args=[job_id], task_id=process_video_task_id(job_id))
    except Exception:
        log.exception("job=%s could not be queued now; the watchdog will retry", job_id)


def change_status(
    session: Session,
    job_id: str,
    to: JobStatus,
    *,
    among: Iterable[JobStatus],
    where: Iterable[ColumnElement[bool]] = (),
    **values: Any,
) -> bool:
    """Move the job to ``to`` if its status is one of ``among`` (and the conditions
    ``where`` hold), setting ``values`` in the same statement; whether it moved. The
    caller commits (or rolls back)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(list(among)), *where)
        .values(status=to, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def end_job(
    job_id: str,
    status: JobStatus,
    message: str | None = None,
    *,
    among: Iterable[JobStatus] = UNFINISHED,
    where: Iterable[ColumnElement[bool]] = (),
    values: dict[str, Any] | None = None,
    within: Callable[[Session], None] | None = None,
) -> bool:
    """End the job as ``status`` if it is still one of ``among`` (and the conditions
    ``where`` hold); whether this call ended it.

    ``values`` are more columns set by the same update; ``within`` runs in the same
    transaction once the update took (storing a tracked job's tracks, say). A failed
    or cancelled job loses its partial detections in that transaction too. Then, only
    when this call ended the job: its queued tasks are revoked, its webhook event is
    recorded and sent, its owner's next waiting job is admitted, and the metrics
    count it.
    """
    assert status in FINISHED_STATUSES
    now = utcnow()
    kept_until = expiry(now)
    with db.transaction() as session:
        took = change_status(
            session,
            job_id,
            status,
            among=among,
            where=where,
            error=message if status is JobStatus.FAILED else None,
            finished_at=now,
            # A stored video is kept for VIDEO_RETENTION_DAYS from now; none stored: nothing to delete.
            video_expires_at=None
            if kept_until is None
            else case((Job.storage_key.is_not(None), kept_until), else_=None),
            **(values or {}),
        )
        if not took:
            session.rollback()
            return False
        if status is not JobStatus.SUCCEEDED:
            session.execute(delete(FrameDetections).where(FrameDetections.job_id == job_id))
        if within is not None:
            within(session)
        owner_id, chunk_count = session.execute(
            select(Job.owner_id, Job.chunk_count).where(Job.id == job_id)
        ).one()
    log.info("job=%s %s%s", job_id, status.value, f": {message}" if message else "")
    metrics.observe_job_ended(status.value)
    if status is not JobStatus.SUCCEEDED:
        revoke(job_id, chunk_count or 0)
    job_ended(job_id)  # its webhook event, if it has a callback_url
    admit_waiting(owner_id)
    return True


def stop_job(job_id: str, status: JobStatus, message: str) -> bool:
    """Move an unfinished job to ``failed`` or ``cancelled``, drop its partial
    detections and revoke its pending tasks; False if it had already ended."""
    assert status in (JobStatus.FAILED, JobStatus.CANCELLED)
    return end_job(job_id, status, message)


def processing_count(owner_id: int) -> int:
    """How many of the user's jobs are processing now."""
    count = db.session.scalar(
        select(func.count()).where(Job.owner_id == owner_id, Job.status == JobStatus.PROCESSING)
    )
    return int(count or 0)


def admit_waiting(owner_id: int) -> int:
    """Send ``process_video`` for the user's oldest jobs waiting for a slot, as many as
    MAX_PROCESSING_JOBS_PER_USER leaves room for; how many were sent.

    Planning checks the limit again as it claims a job, so a message too many
    only finds the job waiting still.
    """
    limit = current_settings().max_processing_jobs_per_user
    waiting = select(Job.id).where(
        Job.owner_id == owner_id, Job.status == JobStatus.QUEUED, Job.waiting_for == WAIT_SLOT
    )
    if limit > 0:
        room = limit - processing_count(owner_id)
        if room <= 0:
            db.session.rollback()
            return 0
        waiting = waiting.limit(room)
    job_ids = list(db.session.scalars(waiting.order_by(Job.created_at, Job.id)))
    db.session.rollback()
    for job_id in job_ids:
        send_process_video(job_id)
    return len(job_ids)


def revoke(job_id: str, chunk_count: int) -> None:
    """Tell workers to skip the job's queued tasks (best effort: tasks also check the job)."""
    try:
        _celery().control.revoke(job_task_ids(job_id, chunk_count))
    except Exception:
        log.warning("job=%s could not broadcast revoke; its tasks will see the job stopped", job_id)
