"""The watchdog, run on a schedule by the processor worker with ``--beat``: it notices
jobs that stopped moving and resends, resumes or fails them, with a message; and it
deletes stored videos past their retention (detector.pipeline.retention).

It judges progress, not age: a job waiting behind other jobs' chunks on a busy
queue is healthy (`watch_processing`). Each pass reads a few aggregates per job,
never a chunk's frame lists, so its cost grows with the number of jobs in
flight, not with the length of their videos.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from celery.utils.log import get_task_logger
from sqlalchemy import func, select

from detector.config import current_settings
from detector.db import db
from detector.models import WAIT_SLOT, WAIT_WORKER, Chunk, ChunkStatus, Job, JobStatus, utcnow
from detector.pipeline.activity import last_progress
from detector.pipeline.admission import model_of
from detector.pipeline.chunks import job_storage
from detector.pipeline.dispatch import admit_waiting, send_process_video, stop_job
from detector.pipeline.download import watch_downloads
from detector.pipeline.merging import merge_chunks
from detector.pipeline.names import WATCHDOG
from detector.pipeline.quota import sweep_reservations
from detector.pipeline.rendering import watch_renders
from detector.pipeline.retention import measure_videos, sweep_videos
from detector.pipeline.webhooks import resend_overdue_events
from detector.pipeline.workers import queue_depth
from detector.runtime.queues import model_queue

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
    counts = {"resent": 0, "resumed": 0, "failed": 0, "waiting": 0}
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
    for name, count in watch_processing(now, stall).items():
        counts[name] += count
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
    # Storage reservations of uploads and downloads whose process died before settling them.
    counts["reservations_released"] = sweep_reservations()
    return counts


def _processing_jobs() -> list[Any]:
    """Every processing job with its chunks summed in SQL: how many, how many done and
    running, and their last change (no chunk's frame lists are read)."""
    chunk_counts = (
        select(
            Chunk.job_id,
            func.count().label("chunks"),
            func.count().filter(Chunk.status == ChunkStatus.DONE).label("done"),
            func.count().filter(Chunk.status == ChunkStatus.RUNNING).label("running"),
            func.max(Chunk.updated_at).label("chunk_activity"),
        )
        .select_from(Chunk)
        .join(Job, Job.id == Chunk.job_id)
        .where(Job.status == JobStatus.PROCESSING)
        .group_by(Chunk.job_id)
        .subquery()
    )
    return list(
        db.session.execute(
            select(
                Job.id,
                Job.model_key,
                Job.dispatched,
                Job.created_at,
                Job.started_at,
                Job.tracked_at,
                func.coalesce(chunk_counts.c.chunks, 0).label("chunks"),
                func.coalesce(chunk_counts.c.done, 0).label("done"),
                func.coalesce(chunk_counts.c.running, 0).label("running"),
                chunk_counts.c.chunk_activity,
            )
            .outerjoin(chunk_counts, chunk_counts.c.job_id == Job.id)
            .where(Job.status == JobStatus.PROCESSING)
        )
    )


def _pending_chunks(job_id: str) -> list[int]:
    return list(
        db.session.scalars(
            select(Chunk.index)
            .where(Chunk.job_id == job_id, Chunk.status != ChunkStatus.DONE)
            .order_by(Chunk.index)
        )
    )


def watch_processing(now: datetime, stall: timedelta) -> dict[str, int]:
    """Resume, resend or fail processing jobs that stopped moving.

    A job whose chunks wait is not stalled while its model's queue moves: in a
    backlog, its chunks wait behind other jobs' for as long as those run. So a job
    is failed only when no detector of its model has made progress on any chunk
    for JOB_STALL_SECONDS (workers down), or when its model's detectors work but
    its own chunks have no message left on the queue (messages lost).
    """
    session = db.session
    counts = {"resent": 0, "resumed": 0, "failed": 0, "waiting": 0}
    jobs = _processing_jobs()
    progress = last_progress()
    session.rollback()
    depths: dict[str, int | None] = {}
    for job in jobs:
        activity = [job.started_at or job.created_at, job.tracked_at, job.chunk_activity]
        idle = now - max(t for t in activity if t is not None)
        if job.chunks and job.done == job.chunks:
            if idle > min(stall, timedelta(minutes=2)):
                # The chord's bookkeeping was lost (result backend flushed), or a
                # tracking step's message or worker: merge (and track) it again.
                log.warning("job=%s all chunks done but never finished; merging", job.id)
                merge_chunks.delay(None, job.id)
                counts["resumed"] += 1
            continue
        if idle <= stall:
            continue
        if not job.dispatched:
            send_process_video(job.id)
            counts["resent"] += 1
            continue
        model = model_of(job)
        model_idle = now - progress[model] if model in progress else idle
        if model_idle <= stall:
            # Its model's detectors are working: on other jobs' chunks, ahead of this one's.
            queue = model_queue(model)
            if queue not in depths:
                depths[queue] = queue_depth(queue)
            if job.running or depths[queue] != 0:
                counts["waiting"] += 1
                continue
            pending = _pending_chunks(job.id)
            session.rollback()
            message = (
                f"chunks {pending} have no message left in queue {queue} while its detectors "
                f"work on other jobs (messages lost: the broker's queue was purged or lost)"
            )
        else:
            pending = _pending_chunks(job.id)
            session.rollback()
            message = (
                f"no detector serving model {model!r} has made progress on any chunk for "
                f"{int(min(idle, model_idle).total_seconds())} s; chunks {pending} never finished "
                f"(workers down or messages lost)"
            )
        if stop_job(job.id, JobStatus.FAILED, message):
            counts["failed"] += 1
    return counts
