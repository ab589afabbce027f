"""Step 4 of a tracked job: `track_objects` follows objects across the job's stored
frames, in frame order, gives each object a track id and stores the tracks.

Chunks are detected in parallel, but a tracker needs the frames in order, so a
job with ``track`` runs this once over all its frames after `merge_chunks` has
checked every chunk is stored, and only then succeeds. The tracker ignores any
``track_id`` already in the frames and tracks deterministically, so a
redelivered task writes the same ids again; the tracks are replaced, never
duplicated, in the transaction that ends the job.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session

from detector.config import current_settings
from detector.db import db
from detector.detection import Detections
from detector.models import FrameDetections, Job, JobStatus, Track, utcnow
from detector.pipeline.dispatch import end_job, stop_job
from detector.pipeline.limits import Deadline, LimitExceeded, TimeLimit, tracking_limit
from detector.pipeline.names import TRACK_OBJECTS, track_task_id
from detector.tracking import Tracker, frame_rate_of

log = get_task_logger(__name__)

# Frames read, tracked and written back per transaction (and per progress report).
BATCH_FRAMES = 500
# A tracking step that reported progress this recently is under way: merge_chunks
# (which runs twice for most jobs: the chord's callback and the last chunk's send)
# does not start another. One that has been silent longer died, and the watchdog's
# merge starts it again.
TRACKING_LEASE = timedelta(minutes=2)


def hand_to_tracking(job_id: str, objects_total: int) -> bool:
    """Start the job's tracking step, as one conditional update: the job must be
    processing and no tracking step may have reported progress within
    TRACKING_LEASE. Whether this caller started it (and so sends the task)."""
    now = utcnow()
    with db.transaction() as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.PROCESSING,
                or_(
                    Job.tracked_at.is_(None),
                    Job.frames_tracked.is_(None),
                    Job.tracked_at < now - TRACKING_LEASE,
                ),
            )
            .values(frames_tracked=0, tracked_at=now, objects_total=objects_total)
            .execution_options(synchronize_session=False)
        )
        took = bool(result.rowcount == 1)  # type: ignore[attr-defined]
    return took


def job_tracking_limit(job_id: str) -> TimeLimit:
    """The time the job's tracking step may take: by its analysed frames."""
    frames = db.session.scalar(select(Job.frames_total).where(Job.id == job_id))
    return tracking_limit(current_settings(), frames)


def send_track_objects(job_id: str) -> None:
    """Queue a job's tracking step (its id is derived, so it can be revoked), with its
    time limit (the worker's soft and hard limits, a grace period past the one the
    step checks itself between batches)."""
    limit = job_tracking_limit(job_id)
    track_objects.apply_async(args=[job_id], task_id=track_task_id(job_id), **limit.options())


def analysed_timestamps(job_id: str) -> list[float]:
    """The timestamps of a job's stored frames, in order (one column of its frames)."""
    return list(
        db.session.scalars(
            select(FrameDetections.timestamp)
            .where(FrameDetections.job_id == job_id)
            .order_by(FrameDetections.index)
        )
    )


@shared_task(name=TRACK_OBJECTS, bind=True, ignore_result=False)
def track_objects(self: Task, job_id: str) -> dict[str, Any]:
    """Track the objects of a job's stored frames in order, store the tracks, end the job.
    Past its time limit (detector.pipeline.limits.tracking_limit) it fails the job saying so."""
    deadline = Deadline(job_tracking_limit(job_id))
    db.session.rollback()
    try:
        return _track(job_id, deadline)
    except (LimitExceeded, SoftTimeLimitExceeded):
        # Its own check between batches, or the worker's soft limit (stuck in one call).
        db.session.rollback()
        message = deadline.limit.message()
        stop_job(job_id, JobStatus.FAILED, message)
        return {"job_id": job_id, "failed": message}


def _track(job_id: str, deadline: Deadline) -> dict[str, Any]:
    session = db.session
    job = session.get(Job, job_id)
    if job is None or job.status is not JobStatus.PROCESSING or not job.track:
        return {"job_id": job_id, "skipped": "job is not processing or not tracked"}
    tracker = Tracker(frame_rate_of(analysed_timestamps(job_id)))
    job.frames_tracked, job.tracked_at = 0, utcnow()
    session.commit()
    tracked, last = 0, -1
    while True:
        rows = session.execute(
            select(FrameDetections.index, FrameDetections.timestamp, FrameDetections.objects)
            .where(FrameDetections.job_id == job_id, FrameDetections.index > last)
            .order_by(FrameDetections.index)
            .limit(BATCH_FRAMES)
        ).all()
        if not rows:
            break
        changed = [
            {
                "job_id": job_id,
                "index": index,
                "objects": tracker.update(index, timestamp, Detections.from_objects(objects)).to_objects(),
            }
            for index, timestamp, objects in rows
        ]
        session.execute(update(FrameDetections), changed)
        tracked += len(rows)
        last = rows[-1][0]
        still_processing = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.PROCESSING)
            .values(frames_tracked=tracked, tracked_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        session.commit()
        if not still_processing:
            return {"job_id": job_id, "skipped": "job stopped while tracking"}
        deadline.check()
    summaries = tracker.summaries()

    def store_tracks(session: Session) -> None:
        session.execute(delete(Track).where(Track.job_id == job_id))
        if summaries:
            session.execute(insert(Track), [{"job_id": job_id, **s.as_dict()} for s in summaries])

    session.rollback()
    if not end_job(
        job_id,
        JobStatus.SUCCEEDED,
        among=[JobStatus.PROCESSING],
        values={"tracks_total": len(summaries)},
        within=store_tracks,
    ):
        return {"job_id": job_id, "skipped": "job stopped while tracking"}
    log.info("job=%s succeeded: %d frames tracked, %d tracks", job_id, tracked, len(summaries))
    return {"job_id": job_id, "frames": tracked, "tracks": len(summaries)}
