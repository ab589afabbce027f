"""Step 3 of a job: `merge_chunks` checks every chunk is stored exactly once and ends
the job (or hands a tracked job to `track_objects`); `chunk_failed`, the chord's
error callback, fails it instead."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.utils.log import get_task_logger
from sqlalchemy import func, select

from detector.db import db
from detector.models import Chunk, ChunkStatus, FrameDetections, Job, JobStatus, utcnow
from detector.pipeline.dispatch import job_finished, stop_job
from detector.pipeline.names import CHUNK_FAILED, MERGE_CHUNKS
from detector.pipeline.retention import set_expiry
from detector.pipeline.tracking import send_track_objects, tracking_under_way

log = get_task_logger(__name__)


@shared_task(name=MERGE_CHUNKS, bind=True, ignore_result=False, max_retries=10)
def merge_chunks(self: Task, chunk_summaries: list[dict[str, Any]] | None, job_id: str) -> dict[str, Any]:
    """Check that every chunk is stored exactly once, then mark the job succeeded."""
    session = db.session
    job = session.get(Job, job_id)
    if job is None or job.status is not JobStatus.PROCESSING:
        return {"job_id": job_id, "skipped": "job is not processing"}
    chunks = session.scalars(select(Chunk).where(Chunk.job_id == job_id).order_by(Chunk.index)).all()
    missing = sorted(
        set(range(job.chunk_count or 0)) - {c.index for c in chunks if c.status is ChunkStatus.DONE}
    )
    stored = session.scalar(select(func.count()).where(FrameDetections.job_id == job_id))
    if missing or stored != job.frames_total:
        session.rollback()
        if self.request.retries < self.max_retries:
            raise self.retry(countdown=3)
        stop_job(
            job_id,
            JobStatus.FAILED,
            f"chunks {missing} never finished ({stored} of {job.frames_total} frames stored)",
        )
        return {"job_id": job_id, "failed": "incomplete"}
    job.objects_total = sum(c.objects for c in chunks)
    decoded = sum(c.frames_decoded for c in chunks)
    if job.track:
        # Tracking is a step of its own, on all the frames in order; it ends the job.
        if tracking_under_way(job):
            session.rollback()
            return {"job_id": job_id, "skipped": "tracking is under way"}
        job.frames_tracked = 0
        job.tracked_at = utcnow()
        session.commit()
        log.info("job=%s merged: %d frames, %d objects; tracking", job_id, stored, job.objects_total)
        send_track_objects(job_id)
        return {"job_id": job_id, "frames": stored, "objects": job.objects_total, "tracking": True}
    job.status = JobStatus.SUCCEEDED
    job.finished_at = utcnow()
    set_expiry(job)
    owner_id = job.owner_id
    session.commit()
    log.info("job=%s succeeded: %d frames, %d objects", job_id, stored, job.objects_total)
    job_finished(job_id, owner_id)  # its webhook event; its owner's next waiting job
    return {
        "job_id": job_id,
        "frames": stored,
        "objects": job.objects_total,
        "chunks": len(chunks),
        "frames_decoded": decoded,
    }


@shared_task(name=CHUNK_FAILED, ignore_result=True)
def chunk_failed(request: Any, exc: Any, traceback: Any, job_id: str) -> None:
    """The chord's error callback: fail the job, naming the chunk.

    Celery calls it in the process that saw a chunk fail, with a stand-in
    request and the error. Usually the chunk has failed the job itself already
    (and marked itself failed), and this finds the job finished. Otherwise the
    failed chunk is the one the database marks failed.
    """
    failed = db.session.scalars(
        select(Chunk).where(Chunk.job_id == job_id, Chunk.status == ChunkStatus.FAILED).order_by(Chunk.index)
    ).first()
    where = (
        f"chunk {failed.index} (frames {failed.start_frame}-{failed.end_frame - 1})" if failed else "a chunk"
    )
    db.session.rollback()
    log.info("job=%s chord failed: %s", job_id, exc)
    stop_job(job_id, JobStatus.FAILED, f"{where} failed: {exc}")
