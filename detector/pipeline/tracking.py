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
from celery.utils.log import get_task_logger
from sqlalchemy import delete, insert, select, update

from detector.db import db
from detector.models import Chunk, FrameDetections, Job, JobStatus, Track, utcnow
from detector.pipeline.dispatch import job_finished
from detector.pipeline.names import TRACK_OBJECTS, track_task_id
from detector.pipeline.retention import set_expiry
from detector.tracking import Tracker, frame_rate_of

log = get_task_logger(__name__)

# Frames read, tracked and written back per transaction (and per progress report).
BATCH_FRAMES = 500
# A tracking step that reported progress this recently is under way: merge_chunks
# (which runs twice for most jobs: the chord's callback and the last chunk's send)
# does not start another. One that has been silent longer died, and the watchdog's
# merge starts it again.
TRACKING_LEASE = timedelta(minutes=2)


def tracking_under_way(job: Job) -> bool:
    """Whether the job's tracking step has reported progress within TRACKING_LEASE."""
    return (
        job.tracked_at is not None
        and job.frames_tracked is not None
        and utcnow() - job.tracked_at < TRACKING_LEASE
    )


def send_track_objects(job_id: str) -> None:
    """Queue a job's tracking step (its id is derived, so it can be revoked)."""
    track_objects.apply_async(args=[job_id], task_id=track_task_id(job_id))


def _processing(job_id: str) -> bool:
    return db.session.scalar(select(Job.status).where(Job.id == job_id)) is JobStatus.PROCESSING


def analysed_timestamps(job_id: str) -> list[float]:
    """The timestamps of a job's analysed frames, in order, from its chunks' plans."""
    plans = db.session.scalars(select(Chunk.timestamps).where(Chunk.job_id == job_id).order_by(Chunk.index))
    return [t for timestamps in plans for t in timestamps]


@shared_task(name=TRACK_OBJECTS, bind=True, ignore_result=False)
def track_objects(self: Task, job_id: str) -> dict[str, Any]:
    """Track the objects of a job's stored frames in order, store the tracks, end the job."""
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
            {"job_id": job_id, "index": index, "objects": tracker.update(index, timestamp, objects)}
            for index, timestamp, objects in rows
        ]
        session.execute(update(FrameDetections), changed)
        tracked += len(rows)
        last = rows[-1][0]
        session.execute(
            update(Job).where(Job.id == job_id).values(frames_tracked=tracked, tracked_at=utcnow())
        )
        session.commit()
        if not _processing(job_id):
            return {"job_id": job_id, "skipped": "job stopped while tracking"}
    summaries = tracker.summaries()
    with db.transaction():
        job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
        if job is None or job.status is not JobStatus.PROCESSING:
            return {"job_id": job_id, "skipped": "job stopped while tracking"}
        session.execute(delete(Track).where(Track.job_id == job_id))
        if summaries:
            session.execute(insert(Track), [{"job_id": job_id, **s.as_dict()} for s in summaries])
        job.tracks_total = len(summaries)
        job.status = JobStatus.SUCCEEDED
        job.finished_at = utcnow()
        set_expiry(job)
        owner_id = job.owner_id
    log.info("job=%s succeeded: %d frames tracked, %d tracks", job_id, tracked, len(summaries))
    job_finished(job_id, owner_id)
    return {"job_id": job_id, "frames": tracked, "tracks": len(summaries)}
