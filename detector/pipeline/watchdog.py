"""The watchdog, run on a schedule by the processor worker with ``--beat``: it notices
jobs that stopped moving and resends, resumes or fails them, with a message; and it
deletes stored videos past their retention (detector.pipeline.retention)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from celery.utils.log import get_task_logger
from sqlalchemy import select

from detector.config import current_settings
from detector.db import db
from detector.models import WAIT_SLOT, WAIT_WORKER, ChunkStatus, Job, JobStatus, utcnow
from detector.pipeline.admission import model_of
from detector.pipeline.chunks import job_storage
from detector.pipeline.dispatch import admit_waiting, send_process_video, stop_job
from detector.pipeline.download import watch_downloads
from detector.pipeline.merging import merge_chunks
from detector.pipeline.names import WATCHDOG
from detector.pipeline.rendering import watch_renders
from detector.pipeline.retention import measure_videos, sweep_videos
from detector.pipeline.webhooks import resend_overdue_events

log = get_task_logger(__name__)

# An upload file nobody has written to for this long was abandoned: an upload in
# progress is written to all the time, and a request ends within API_TIMEOUT.
UNFINISHED_UPLOAD_SECONDS = 3600


@shared_task(name=WATCHDOG, ignore_result=True)
def watchdog() -> dict[str, int]:
    """Notice jobs that stopped moving: resend, resume or fail them, with a message."""
    session = db.session
    now = utcnow()
    stall = timedelta(seconds=current_settings().job_stall_seconds)
    counts = {"resent": 0, "resumed": 0, "failed": 0}
    queued = session.scalars(select(Job).where(Job.status == JobStatus.QUEUED)).all()
    waiting_owners = sorted({job.owner_id for job in queued if job.waiting_for == WAIT_SLOT})
    for job in queued:
        if job.waiting_for == WAIT_WORKER:
            if now - job.created_at > stall:
                stop_job(
                    job.id,
                    JobStatus.FAILED,
                    f"no online worker served model {model_of(job)!r} within "
                    f"{int(stall.total_seconds())} s of the job's submission",
                )
                counts["failed"] += 1
            else:
                send_process_video(job.id)  # planning looks for a worker again
        elif job.waiting_for is None and now - job.created_at > stall:
            send_process_video(job.id)  # its message was lost (broker down at upload?)
            counts["resent"] += 1
    session.rollback()
    # Jobs waiting for one of their owner's slots: a slot whose job-end message was lost.
    for owner_id in waiting_owners:
        admit_waiting(owner_id)
    # A job just resent may already be processing in another worker: read jobs
    # afresh, or the session's copy (still queued, never started) would look
    # stalled and be sent a second time.
    session.expire_all()
    processing = session.scalars(select(Job).where(Job.status == JobStatus.PROCESSING)).all()
    for job in processing:
        chunks = job.chunks
        activity = [job.started_at or job.created_at, job.tracked_at, *(c.updated_at for c in chunks)]
        last = max(t for t in activity if t is not None)
        idle = now - last
        if chunks and all(c.status is ChunkStatus.DONE for c in chunks):
            if idle > min(stall, timedelta(minutes=2)):
                # The chord's bookkeeping was lost (result backend flushed), or a
                # tracking step's message or worker: merge (and track) it again.
                log.warning("job=%s all chunks done but never finished; merging", job.id)
                merge_chunks.delay(None, job.id)
                counts["resumed"] += 1
        elif idle > stall:
            if not job.dispatched:
                job_id = job.id
                session.rollback()
                send_process_video(job_id)
                counts["resent"] += 1
                continue
            pending = [c.index for c in chunks if c.status is not ChunkStatus.DONE]
            stop_job(
                job.id,
                JobStatus.FAILED,
                f"no progress for {int(idle.total_seconds())} s; chunks {pending} never "
                f"finished (workers down or messages lost)",
            )
            counts["failed"] += 1
    session.rollback()
    # Downloads (source_url jobs) that stopped moving; webhook retries whose message was lost.
    resent, failed = watch_downloads(stall)
    counts["resent"] += resent
    counts["failed"] += failed
    # Annotated videos whose render stopped moving.
    counts["renders_resent"], counts["renders_failed"] = watch_renders(stall)
    if webhooks := resend_overdue_events(stall):
        log.warning("resent %d webhook events whose retry message was lost", webhooks)
    # Uploads whose API process died mid-request (killed, or past API_TIMEOUT).
    counts["uploads_swept"] = job_storage().sweep_uploads(older_than=UNFINISHED_UPLOAD_SECONDS)
    # Stored videos past VIDEO_RETENTION_DAYS; sizes the storage quota still lacks.
    counts["videos_deleted"] = sweep_videos(job_storage())
    counts["videos_measured"] = measure_videos(job_storage())
    return counts
