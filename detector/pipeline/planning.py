"""Step 1 of a job: `process_video` indexes the video's frames, plans its chunks and
starts the chord (a `detect_frames` task per chunk, then `merge_chunks`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from celery import Task, chord, shared_task
from celery.utils.log import get_task_logger
from sqlalchemy import CursorResult, and_, delete, or_, update

from detector.config import current_settings
from detector.db import db
from detector.models import Chunk, Job, JobStatus, utcnow
from detector.pipeline.chunks import detect_frames, job_storage
from detector.pipeline.dispatch import stop_job
from detector.pipeline.merging import chunk_failed, merge_chunks
from detector.pipeline.names import PROCESS_VIDEO, chunk_task_id
from detector.storage import StorageError
from detector.video import VideoError, index_frames, plan_chunks

log = get_task_logger(__name__)

# How long a worker that started planning a job holds it. Another delivery of
# process_video (the watchdog's resend, or a redelivery racing the first) waits;
# after this it takes over from a planner that died. Planning reads the video's
# packets and decodes only its first frames, up to the first keyframe, so
# minutes are ample.
PLANNING_LEASE = timedelta(minutes=5)


def _claim(job_id: str) -> bool:
    """Claim the job for planning in one statement, so that two deliveries never both plan it.

    A job can be claimed when it is queued, or processing but not dispatched with
    an expired claim (its planner died).
    """
    now = utcnow()
    claim = db.session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.dispatched.is_(False),
            or_(
                Job.status == JobStatus.QUEUED,
                and_(
                    Job.status == JobStatus.PROCESSING,
                    or_(Job.started_at.is_(None), Job.started_at < now - PLANNING_LEASE),
                ),
            ),
        )
        .values(status=JobStatus.PROCESSING, started_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return cast("CursorResult[Any]", claim).rowcount == 1


@shared_task(name=PROCESS_VIDEO, bind=True, ignore_result=False)
def process_video(self: Task, job_id: str) -> dict[str, Any]:
    """Index the video's frames, plan chunks and start the chord of detect_frames."""
    session = db.session
    claimed = _claim(job_id)
    job = session.get(Job, job_id)
    if job is None or job.status.finished:
        return {"job_id": job_id, "skipped": "job is gone or finished"}
    if job.dispatched:
        return {"job_id": job_id, "skipped": "already dispatched"}
    if not claimed:
        # Another delivery claimed it less than PLANNING_LEASE ago and is planning it.
        now = utcnow()
        wait = ((job.started_at or now) + PLANNING_LEASE - now).total_seconds()
        log.info("job=%s is being planned by another worker; looking again in %d s", job_id, wait)
        raise self.retry(countdown=max(1.0, wait))

    try:
        index = index_frames(job_storage().path(job.storage_key))
    except (VideoError, StorageError) as exc:
        stop_job(job_id, JobStatus.FAILED, f"the video cannot be read: {exc}")
        return {"job_id": job_id, "failed": str(exc)}
    selected = job.selection.select([index.timestamp(pts) for pts in index.pts])
    if not selected:
        message = (
            f"no frame of the video is in the selection: its {len(index)} frames end at "
            f"{index.timestamp(index.pts[-1]):g} s, and start is {job.start_time or 0:g} s"
        )
        stop_job(job_id, JobStatus.FAILED, message)
        return {"job_id": job_id, "failed": message}
    plans = plan_chunks(index, current_settings().chunk_frames, selected)

    with db.transaction():
        session.execute(delete(Chunk).where(Chunk.job_id == job_id))
        session.add_all(Chunk.from_plan(job_id, plan) for plan in plans)
        job.frame_count = len(index)
        job.frames_total = len(selected)
        job.chunk_count = len(plans)

    header = [
        detect_frames.si(job_id, p.index, p.start_frame, p.end_frame).set(
            task_id=chunk_task_id(job_id, p.index)
        )
        for p in plans
    ]
    body = merge_chunks.s(job_id).on_error(chunk_failed.s(job_id))
    chord(header)(body)
    job.dispatched = True
    session.commit()
    log.info("job=%s planned %d of %d frames in %d chunks", job_id, len(selected), len(index), len(plans))
    return {"job_id": job_id, "frames": len(selected), "chunks": len(plans)}
