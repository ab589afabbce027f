"""Sending work to the queues and stopping it: used by the API and the tasks."""

from __future__ import annotations

import logging

from celery import Celery
from flask import current_app
from sqlalchemy import delete, func, select

from detector.config import current_settings
from detector.db import db
from detector.models import WAIT_SLOT, FrameDetections, Job, JobStatus, utcnow
from detector.pipeline.names import PROCESS_VIDEO, job_task_ids, process_video_task_id
from detector.pipeline.retention import set_expiry
from detector.pipeline.webhooks import job_ended

log = logging.getLogger(__name__)


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


def stop_job(job_id: str, status: JobStatus, message: str) -> bool:
    """Move an unfinished job to ``failed`` or ``cancelled``, drop its partial
    detections and revoke its pending tasks. False if it had already finished."""
    assert status in (JobStatus.FAILED, JobStatus.CANCELLED)
    with db.transaction() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status.finished:
            return False
        job.status = status
        job.error = message if status is JobStatus.FAILED else None
        job.finished_at = utcnow()
        set_expiry(job)
        session.execute(delete(FrameDetections).where(FrameDetections.job_id == job_id))
        chunk_count, owner_id = job.chunk_count or 0, job.owner_id
    log.info("job=%s %s: %s", job_id, status.value, message)
    revoke(job_id, chunk_count)
    job_finished(job_id, owner_id)
    return True


def job_finished(job_id: str, owner_id: int) -> None:
    """What follows a job's end: its webhook event, and the start of its owner's
    next waiting job (MAX_PROCESSING_JOBS_PER_USER)."""
    job_ended(job_id)  # its webhook event, if it has a callback_url
    admit_waiting(owner_id)


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
