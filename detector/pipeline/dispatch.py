"""Sending work to the queues and stopping it: used by the API and the tasks."""

from __future__ import annotations

import logging

from celery import Celery
from flask import current_app
from sqlalchemy import delete

from detector.db import db
from detector.models import FrameDetections, Job, JobStatus, utcnow
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
        chunk_count = job.chunk_count or 0
    log.info("job=%s %s: %s", job_id, status.value, message)
    revoke(job_id, chunk_count)
    job_ended(job_id)  # its webhook event, if it has a callback_url
    return True


def revoke(job_id: str, chunk_count: int) -> None:
    """Tell workers to skip the job's queued tasks (best effort: tasks also check the job)."""
    try:
        _celery().control.revoke(job_task_ids(job_id, chunk_count))
    except Exception:
        log.warning("job=%s could not broadcast revoke; its tasks will see the job stopped", job_id)
