"""The three pipeline tasks, the chord's error callback and the watchdog.

Every task takes ids and re-reads the job from the database; every log line
names the job (and chunk). Writes are idempotent, so a redelivered message
does no harm.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any, cast

from billiard.process import current_process
from celery import Task, chord, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy import CursorResult, and_, delete, func, insert, or_, select, update

from detector.db import db
from detector.detection import DetectorSettings, get_predictor
from detector.models import Chunk, ChunkStatus, FrameDetections, Job, JobStatus, utcnow
from detector.observability import metrics
from detector.pipeline.dispatch import chunk_task_id, send_process_video, stop_job
from detector.pipeline.frames import detect_range
from detector.storage import StorageError, VideoStorage
from detector.video import DecodeStats, VideoError, index_frames, plan_chunks

log = get_task_logger(__name__)

# An upload file nobody has written to for this long was abandoned: an upload in
# progress is written to all the time, and a request ends within API_TIMEOUT.
UNFINISHED_UPLOAD_SECONDS = 3600

# How long a worker that started planning a job holds it. Another delivery of
# process_video (the watchdog's resend, or a redelivery racing the first) waits;
# after this it takes over from a planner that died. Planning reads the video's
# packet index: about 5 ms for 150 frames of 1080p here, so minutes are ample.
PLANNING_LEASE = timedelta(minutes=5)


class JobStopped(Exception):
    """The job was cancelled, failed or deleted while a chunk was running."""


def _storage() -> VideoStorage:
    return current_app.extensions["video_storage"]


def _process_index() -> int:
    """This worker process's index in its pool: picks its GPU (k mod N)."""
    return int(getattr(current_process(), "index", 0) or 0)


@shared_task(name="detector.process_video", bind=True, ignore_result=False)
def process_video(self: Task, job_id: str) -> dict[str, Any]:
    """Index the video's frames, plan chunks and start the chord of detect_frames."""
    session = db.session
    now = utcnow()
    # Claim the job in one statement, so that two deliveries never both plan it.
    claim = session.execute(
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
    claimed = cast("CursorResult[Any]", claim).rowcount == 1
    session.commit()
    job = session.get(Job, job_id)
    if job is None or job.status.finished:
        return {"job_id": job_id, "skipped": "job is gone or finished"}
    if job.dispatched:
        return {"job_id": job_id, "skipped": "already dispatched"}
    if not claimed:
        # Another delivery claimed it less than PLANNING_LEASE ago and is planning it.
        wait = ((job.started_at or now) + PLANNING_LEASE - now).total_seconds()
        log.info("job=%s is being planned by another worker; looking again in %d s", job_id, wait)
        raise self.retry(countdown=max(1.0, wait))

    try:
        index = index_frames(_storage().path(job.storage_key))
    except (VideoError, StorageError) as exc:
        stop_job(job_id, JobStatus.FAILED, f"the video cannot be read: {exc}")
        return {"job_id": job_id, "failed": str(exc)}
    plans = plan_chunks(index, int(current_app.config["CHUNK_FRAMES"]))

    with db.transaction():
        session.execute(delete(Chunk).where(Chunk.job_id == job_id))
        session.add_all(
            Chunk(
                job_id=job_id,
                index=plan.index,
                start_frame=plan.start_frame,
                end_frame=plan.end_frame,
                seek_pts=plan.seek_pts,
                frame_pts=plan.frame_pts,
                timestamps=[index.timestamp(pts) for pts in plan.frame_pts],
            )
            for plan in plans
        )
        job.frames_total = job.frame_count = len(index)
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
    log.info("job=%s planned %d frames in %d chunks", job_id, len(index), len(plans))
    return {"job_id": job_id, "frames": len(index), "chunks": len(plans)}


@shared_task(name="detector.detect_frames", bind=True, ignore_result=False)
def detect_frames(
    self: Task, job_id: str, chunk_index: int, start_frame: int, end_frame: int
) -> dict[str, Any]:
    """Decode frames [start_frame, end_frame) of the job's video, detect, store."""
    where = f"chunk {chunk_index} (frames {start_frame}-{end_frame - 1})"
    summary: dict[str, Any] = {"chunk": chunk_index, "frames": 0, "objects": 0, "decoded": 0}
    config = current_app.config
    with db.transaction() as session:
        job = session.get(Job, job_id)
        chunk = session.get(Chunk, (job_id, chunk_index))
        if job is None or job.status is not JobStatus.PROCESSING:
            return {**summary, "skipped": "job is not processing"}
        if chunk is None or (chunk.start_frame, chunk.end_frame) != (start_frame, end_frame):
            raise RuntimeError(f"{where} does not match the job's plan")
        if chunk.status is ChunkStatus.DONE:
            return {
                **summary,
                "frames": chunk.frames_done,
                "objects": chunk.objects,
                "decoded": chunk.frames_decoded,
            }
        chunk.deliveries += 1
        chunk.status = ChunkStatus.RUNNING
        chunk.frames_done = 0
        chunk.started_at = utcnow()
        deliveries = chunk.deliveries
        plan = (chunk.seek_pts, list(chunk.frame_pts), list(chunk.timestamps))
        threshold, key = job.score_threshold, job.storage_key

    if deliveries > int(config["MAX_CHUNK_DELIVERIES"]):
        stop_job(
            job_id,
            JobStatus.FAILED,
            f"{where} was started {deliveries - 1} times and its worker died each time "
            f"(crash, out of memory or killed); giving up",
        )
        return {**summary, "skipped": "too many deliveries"}
    log.info("job=%s chunk=%d started (delivery %d)", job_id, chunk_index, deliveries)

    done_before = 0

    def progress(frames_done: int) -> None:
        nonlocal done_before
        metrics.observe_batch(frames_done - done_before)
        done_before = frames_done
        with db.transaction() as session:
            session.execute(
                update(Chunk)
                .where(Chunk.job_id == job_id, Chunk.index == chunk_index)
                .values(frames_done=frames_done, updated_at=utcnow())
            )
            status = session.scalar(select(Job.status).where(Job.id == job_id))
        if status is not JobStatus.PROCESSING:
            raise JobStopped()

    stats = DecodeStats()
    try:
        settings = DetectorSettings.from_config(config)
        load_started = time.perf_counter()
        predictor = get_predictor(settings, _process_index())
        if (load_seconds := time.perf_counter() - load_started) > 0.05:  # built, not cached
            metrics.observe_model_load(load_seconds, settings.backend, predictor.device)
        frames = detect_range(
            _storage().path(key),
            predictor,
            seek_pts=plan[0],
            frame_pts=plan[1],
            timestamps=plan[2],
            first_frame=start_frame,
            score_threshold=threshold,
            stats=stats,
            on_batch=progress,
        )
    except JobStopped:
        log.info("job=%s chunk=%d stopped: the job is no longer processing", job_id, chunk_index)
        with db.transaction() as session:
            session.execute(
                update(Chunk)
                .where(Chunk.job_id == job_id, Chunk.index == chunk_index)
                .values(status=ChunkStatus.PENDING, updated_at=utcnow())
            )
        return {**summary, "skipped": "job stopped"}
    except SoftTimeLimitExceeded:
        stop_job(
            job_id,
            JobStatus.FAILED,
            f"{where} ran past the {config['CHUNK_TIME_LIMIT']} s time limit; "
            f"use smaller chunks (CHUNK_FRAMES) or a faster device",
        )
        raise
    except Exception as exc:
        stop_job(job_id, JobStatus.FAILED, f"{where} failed: {exc}")
        raise

    objects = sum(len(f["objects"]) for f in frames)
    metrics.observe_frames(len(frames), predictor.device)
    with db.transaction() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status is not JobStatus.PROCESSING:
            return {**summary, "skipped": "job stopped"}
        # Overwrite, never duplicate: a redelivered chunk replaces its own frames.
        session.execute(
            delete(FrameDetections).where(
                FrameDetections.job_id == job_id,
                FrameDetections.index >= start_frame,
                FrameDetections.index < end_frame,
            )
        )
        if frames:
            session.execute(
                insert(FrameDetections),
                [
                    {
                        "job_id": job_id,
                        "index": f["frame"],
                        "timestamp": f["timestamp"],
                        "objects": f["objects"],
                    }
                    for f in frames
                ],
            )
        session.execute(
            update(Chunk)
            .where(Chunk.job_id == job_id, Chunk.index == chunk_index)
            .values(
                status=ChunkStatus.DONE,
                frames_done=len(frames),
                frames_decoded=stats.decoded,
                objects=objects,
                finished_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        job.model_name = predictor.name
    log.info(
        "job=%s chunk=%d done: %d frames (%d decoded), %d objects",
        job_id,
        chunk_index,
        len(frames),
        stats.decoded,
        objects,
    )
    _merge_if_last(job_id)
    return {**summary, "frames": len(frames), "objects": objects, "decoded": stats.decoded}


def _merge_if_last(job_id: str) -> None:
    """Send merge_chunks now if this was the job's last chunk (checked after our commit).

    The chord's own callback follows and finds the job finished (merging is
    idempotent); this path makes a job succeed without waiting for the result
    backend to notice the chord is complete, and it works when the chord's
    bookkeeping has been lost.
    """
    pending = db.session.scalar(
        select(func.count())
        .select_from(Chunk)
        .where(Chunk.job_id == job_id, Chunk.status != ChunkStatus.DONE)
    )
    db.session.rollback()
    if pending == 0:
        merge_chunks.delay(None, job_id)


@shared_task(name="detector.merge_chunks", bind=True, ignore_result=False, max_retries=10)
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
    job.status = JobStatus.SUCCEEDED
    job.finished_at = utcnow()
    job.objects_total = sum(c.objects for c in chunks)
    session.commit()
    decoded = sum(c.frames_decoded for c in chunks)
    log.info("job=%s succeeded: %d frames, %d objects", job_id, stored, job.objects_total)
    return {
        "job_id": job_id,
        "frames": stored,
        "objects": job.objects_total,
        "chunks": len(chunks),
        "frames_decoded": decoded,
    }


_DEPENDENCY = re.compile(r"Dependency (?P<task>\S+) raised (?P<reason>.*)", re.DOTALL)


@shared_task(name="detector.chunk_failed", ignore_result=True)
def chunk_failed(request: Any, exc: Any, traceback: Any, job_id: str) -> None:
    """The chord's error callback: fail the job, naming the chunk.

    Celery calls it in the process that saw a chunk fail, with a stand-in request
    (its id is the chord callback's, not the chunk's) and a ChordError that names
    the failed task: "Dependency <job_id>-<chunk> raised <error>". Usually the
    chunk has failed the job itself already, and this finds it finished.
    """
    text = str(exc)
    match = _DEPENDENCY.search(text)
    task_id = match["task"] if match else str(getattr(request, "id", "") or "")
    reason = match["reason"] if match else text
    where = "a chunk"
    index = task_id.removeprefix(f"{job_id}-")
    if index != task_id and index.isdigit():
        chunk = db.session.get(Chunk, (job_id, int(index)))
        where = f"chunk {index}"
        if chunk is not None:
            where += f" (frames {chunk.start_frame}-{chunk.end_frame - 1})"
        db.session.rollback()
    log.info("job=%s chord failed: %s", job_id, text)
    stop_job(job_id, JobStatus.FAILED, f"{where} failed: {reason}")


@shared_task(name="detector.watchdog", ignore_result=True)
def watchdog() -> dict[str, int]:
    """Notice jobs that stopped moving: resend, resume or fail them, with a message."""
    session = db.session
    now = utcnow()
    stall = timedelta(seconds=int(current_app.config["JOB_STALL_SECONDS"]))
    counts = {"resent": 0, "resumed": 0, "failed": 0}
    for job in session.scalars(select(Job).where(Job.status == JobStatus.QUEUED)).all():
        if now - job.created_at > stall:
            send_process_video(job.id)  # its message was lost (broker down at upload?)
            counts["resent"] += 1
    # A job just resent may already be processing in another worker: read jobs
    # afresh, or the session's copy (still queued, never started) would look
    # stalled and be sent a second time.
    session.expire_all()
    processing = session.scalars(select(Job).where(Job.status == JobStatus.PROCESSING)).all()
    for job in processing:
        chunks = job.chunks
        last = max([job.started_at or job.created_at, *(c.updated_at for c in chunks)])
        idle = now - last
        if chunks and all(c.status is ChunkStatus.DONE for c in chunks):
            if idle > min(stall, timedelta(minutes=2)):
                # The chord's bookkeeping was lost (result backend flushed): finish it here.
                log.warning("job=%s all chunks done but never merged; merging", job.id)
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
    # Uploads whose API process died mid-request (killed, or past API_TIMEOUT).
    counts["uploads_swept"] = _storage().sweep_uploads(older_than=UNFINISHED_UPLOAD_SECONDS)
    return counts
