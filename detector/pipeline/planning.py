"""Step 1 of a job: `process_video` indexes the video's frames, plans its chunks and
starts the chord (a `detect_frames` task per chunk, then `merge_chunks`)."""

from __future__ import annotations

from datetime import timedelta
from itertools import islice
from types import SimpleNamespace
from typing import Any

from celery import Task, chord, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import aliased

from detector.config import current_settings
from detector.db import db
from detector.detection.catalog import UnknownModel
from detector.models import WAIT_SLOT, WAIT_WORKER, Chunk, Job, JobStatus, User, utcnow
from detector.pipeline import lease
from detector.pipeline.admission import in_line_before, model_of, wait_reason
from detector.pipeline.chunks import detect_frames, job_storage
from detector.pipeline.dispatch import stop_job
from detector.pipeline.limits import planning_message
from detector.pipeline.merging import chunk_failed, merge_chunks
from detector.pipeline.models import current_catalog
from detector.pipeline.names import PROCESS_VIDEO, chunk_task_id
from detector.pipeline.workers import forget
from detector.runtime.queues import chunk_priority, model_queue
from detector.storage import StorageError
from detector.video import VideoError, index_frames, iter_chunk_plans

log = get_task_logger(__name__)

# How long a worker that started planning a job holds it. Another delivery of
# process_video (the watchdog's resend, or a redelivery racing the first) waits;
# after this it takes over from a planner that died. Planning reads the video's
# packets and decodes only its first frames, up to the first keyframe, so
# minutes are ample. Its time limit (limits.PLANNING_SECONDS) ends a planner
# before its lease does.
PLANNING_LEASE = timedelta(minutes=5)

# A job whose model no online worker serves is looked at again every
# WORKER_RECHECK seconds for WORKER_GRACE after its submission (workers started
# together with the service come up within it); after that, at each watchdog
# run, until JOB_STALL_SECONDS fail it.
WORKER_RECHECK = 5.0
WORKER_GRACE = timedelta(minutes=2)

# Chunk rows written per flush while a job is planned.
CHUNK_ROWS = 100


def _claim(job: SimpleNamespace, limit: int) -> bool:
    """Claim the job for planning by taking its lease (``started_at``) in one statement,
    so that two deliveries never both plan it.

    A job can be claimed when it is queued (and, with a per-user ``limit``, its
    owner's processing jobs and older queued ones leave it room), or processing
    but not dispatched with an expired lease (its planner died).
    """
    now = utcnow()
    session = db.session
    job_id, owner_id = job.id, job.owner_id
    queued = Job.status == JobStatus.QUEUED
    if limit > 0:
        if session.get_bind().dialect.name != "sqlite":
            # Claims of one user's jobs take turns (SQLite's writers always do).
            session.execute(select(User.id).where(User.id == owner_id).with_for_update())
        others = aliased(Job)
        running = (
            select(func.count())
            .select_from(others)
            .where(others.owner_id == owner_id, others.status == JobStatus.PROCESSING)
            .scalar_subquery()
        )
        queued = and_(queued, running + in_line_before(job) < limit)
    took = lease.take(
        session,
        Job,
        Job.id == job_id,
        Job.dispatched.is_(False),
        or_(
            queued,
            and_(Job.status == JobStatus.PROCESSING, lease.expired(Job.started_at, PLANNING_LEASE, now)),
        ),
        stamp=Job.started_at,
        now=now,
        status=JobStatus.PROCESSING,
        waiting_for=None,
    )
    session.commit()
    return took


def _hold(job: Job, reason: str) -> dict[str, Any]:
    """Leave the queued job waiting for ``reason`` (detector.pipeline.admission)."""
    if job.waiting_for != reason:
        job.waiting_for = reason
        log.info("job=%s waits: %s", job.id, reason)
    db.session.commit()
    return {"job_id": job.id, "waiting": reason}


# No limit on retries (Celery's default is 3): how long planning looks again is
# bounded by time instead, WORKER_GRACE for a worker to come up and PLANNING_LEASE
# for another delivery that plans the job.
@shared_task(name=PROCESS_VIDEO, bind=True, ignore_result=False, max_retries=None)
def process_video(self: Task, job_id: str) -> dict[str, Any]:
    """Index the video's frames, plan chunks and start the chord of detect_frames."""
    session = db.session
    job = session.get(Job, job_id)
    if job is None or job.status.finished:
        session.rollback()
        return {"job_id": job_id, "skipped": "job is gone or finished"}
    if job.dispatched:
        session.rollback()
        return {"job_id": job_id, "skipped": "already dispatched"}
    try:
        current_catalog().resolve(job.model_key)
    except UnknownModel as exc:
        session.rollback()
        stop_job(job_id, JobStatus.FAILED, f"the job's model is no longer offered: {exc}")
        return {"job_id": job_id, "failed": str(exc)}
    if job.status is JobStatus.QUEUED and (reason := wait_reason(job)) is not None:
        submitted = job.created_at
        held = _hold(job, reason)
        if reason == WAIT_WORKER and utcnow() - submitted < WORKER_GRACE:
            forget()  # ask the workers afresh next time
            raise self.retry(countdown=WORKER_RECHECK)
        return held
    # The job's place in its owner's line (read now: the rollback expires it).
    place = SimpleNamespace(
        id=job.id, owner_id=job.owner_id, created_at=job.created_at, model_key=job.model_key
    )
    session.rollback()
    claimed = _claim(place, current_settings().max_processing_jobs_per_user)
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.status.finished:
        return {"job_id": job_id, "skipped": "job is gone or finished"}
    if job.dispatched:
        return {"job_id": job_id, "skipped": "already dispatched"}
    if not claimed and job.status is JobStatus.QUEUED:
        return _hold(job, WAIT_SLOT)  # another of its owner's jobs took the last slot meanwhile
    if not claimed:
        # Another delivery claimed it less than PLANNING_LEASE ago and is planning it.
        wait = lease.remaining(job.started_at, PLANNING_LEASE).total_seconds()
        log.info("job=%s is being planned by another worker; looking again in %d s", job_id, wait)
        raise self.retry(countdown=max(1.0, wait))

    try:
        index = index_frames(job_storage().source(job.storage_key))
    except (VideoError, StorageError) as exc:
        stop_job(job_id, JobStatus.FAILED, f"the video cannot be read: {exc}")
        return {"job_id": job_id, "failed": str(exc)}
    except SoftTimeLimitExceeded:
        session.rollback()
        stop_job(job_id, JobStatus.FAILED, planning_message())
        return {"job_id": job_id, "failed": planning_message()}
    selected = job.selection.select(index.timestamps())
    if not selected:
        message = (
            f"no frame of the video is in the selection: its {len(index)} frames end at "
            f"{index.timestamp(index.pts[-1]):g} s, and start is {job.start_time or 0:g} s"
        )
        stop_job(job_id, JobStatus.FAILED, message)
        return {"job_id": job_id, "failed": message}
    plans = iter_chunk_plans(index, current_settings().chunk_frames, selected)

    spans: list[tuple[int, int, int]] = []  # each chunk's index and frame range, for the chord
    with db.transaction():
        session.execute(delete(Chunk).where(Chunk.job_id == job_id))
        # Stored as they are planned, CHUNK_ROWS at a time, so that a long video's
        # chunks and their frame lists are never all in memory at once.
        while batch := list(islice(plans, CHUNK_ROWS)):
            session.add_all(Chunk.from_plan(job_id, plan) for plan in batch)
            session.flush()
            spans += [(plan.index, plan.start_frame, plan.end_frame) for plan in batch]
        job.frame_count = len(index)
        job.frames_total = len(selected)
        job.chunk_count = len(spans)

    # The job's model's queue; a job's first chunks at a higher priority than its
    # later ones, so that detectors take turns between jobs (chunk_priority).
    queue = model_queue(model_of(job))
    prioritised = current_settings().chunk_priority
    header = [
        detect_frames.si(job_id, chunk, start, end).set(
            task_id=chunk_task_id(job_id, chunk),
            queue=queue,
            routing_key=queue,
            priority=chunk_priority(chunk) if prioritised else None,
        )
        for chunk, start, end in spans
    ]
    body = merge_chunks.s(job_id).on_error(chunk_failed.s(job_id))
    chord(header)(body)
    job.dispatched = True
    session.commit()
    log.info("job=%s planned %d of %d frames in %d chunks", job_id, len(selected), len(index), len(spans))
    return {"job_id": job_id, "frames": len(selected), "chunks": len(spans)}
