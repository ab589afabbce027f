"""Step 3 of a job: `merge_chunks` checks every chunk is stored exactly once and ends
the job (or hands a tracked job to `track_objects`); `chunk_failed`, the chord's
error callback, fails it instead."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.utils.log import get_task_logger
from sqlalchemy import func, select

from detector.db import db
from detector.models import Chunk, ChunkStatus, FrameDetections, Job, JobStatus
from detector.pipeline.dispatch import end_job, stop_job
from detector.pipeline.names import CHUNK_FAILED, MERGE_CHUNKS
from detector.pipeline.tracking import hand_to_tracking, send_track_objects

log = get_task_logger(__name__)


def chunk_totals(job_id: str) -> Any:
    """The job's chunks summed in SQL: how many are done, their frames done,
    decoded and objects (no chunk's frame lists are read)."""
    done = Chunk.status == ChunkStatus.DONE
    return db.session.execute(
        select(
            func.count().filter(done),
            func.coalesce(func.sum(Chunk.frames_done).filter(done), 0),
            func.coalesce(func.sum(Chunk.frames_decoded).filter(done), 0),
            func.coalesce(func.sum(Chunk.objects).filter(done), 0),
        ).where(Chunk.job_id == job_id)
    ).one()


def missing_chunks(job_id: str, chunk_count: int) -> list[int]:
    """The indices of the job's chunks that are not done (few, when any)."""
    done = set(
        db.session.scalars(
            select(Chunk.index).where(Chunk.job_id == job_id, Chunk.status == ChunkStatus.DONE)
        )
    )
    return [index for index in range(chunk_count) if index not in done]


@shared_task(name=MERGE_CHUNKS, bind=True, ignore_result=False, max_retries=10)
def merge_chunks(self: Task, chunk_summaries: list[dict[str, Any]] | None, job_id: str) -> dict[str, Any]:
    """Check that every chunk is stored exactly once, then end the job as succeeded
    (or hand a tracked job to its tracking step).

    It usually runs twice for a job (the last chunk sends it, and so does the
    chord): the job's change of state is one compare-and-set, so only one run
    ends the job and sends its event, and a cancel that came first stands.
    """
    session = db.session
    job = session.get(Job, job_id)
    if job is None or job.status is not JobStatus.PROCESSING:
        session.rollback()
        return {"job_id": job_id, "skipped": "job is not processing"}
    chunk_count, frames_total, track = job.chunk_count or 0, job.frames_total, job.track
    done, _frames_done, decoded, objects = chunk_totals(job_id)
    stored = session.scalar(select(func.count()).where(FrameDetections.job_id == job_id))
    if done != chunk_count or stored != frames_total:
        missing = missing_chunks(job_id, chunk_count)
        session.rollback()
        if self.request.retries < self.max_retries:
            raise self.retry(countdown=3)
        stop_job(
            job_id,
            JobStatus.FAILED,
            f"chunks {missing} never finished ({stored} of {frames_total} frames stored)",
        )
        return {"job_id": job_id, "failed": "incomplete"}
    session.rollback()
    if track:
        # Tracking is a step of its own, on all the frames in order; it ends the job.
        # One merge hands it over: the one whose update finds no tracking under way.
        if not hand_to_tracking(job_id, objects):
            return {"job_id": job_id, "skipped": "tracking is under way"}
        log.info("job=%s merged: %d frames, %d objects; tracking", job_id, stored, objects)
        send_track_objects(job_id)
        return {"job_id": job_id, "frames": stored, "objects": objects, "tracking": True}
    if not end_job(
        job_id, JobStatus.SUCCEEDED, among=[JobStatus.PROCESSING], values={"objects_total": objects}
    ):
        return {"job_id": job_id, "skipped": "job ended meanwhile"}
    log.info("job=%s succeeded: %d frames, %d objects", job_id, stored, objects)
    return {
        "job_id": job_id,
        "frames": stored,
        "objects": objects,
        "chunks": chunk_count,
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
