"""Step 4 of a tracked job: `track_objects` follows objects across the job's stored
frames, in frame order, gives each object a track id and stores the tracks.

Chunks are detected in parallel, but a tracker needs the frames in order, so a
job with ``track`` runs this once over all its frames after `merge_chunks` has
checked every chunk is stored, and only then succeeds. The tracker ignores any
``track_id`` already in the frames and tracks deterministically, so a
redelivered task writes the same ids again; it starts by deleting the tracks an
earlier run stored, so they are replaced, never duplicated (`_track`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from sqlalchemy import delete, insert, select, update

from detector.config import current_settings
from detector.db import db
from detector.detection import Detections
from detector.models import FrameDetections, Job, JobStatus, Track, utcnow
from detector.pipeline import lease
from detector.pipeline.dispatch import end_job, stop_job
from detector.pipeline.lease import AnySession
from detector.pipeline.limits import Deadline, LimitExceeded, TimeLimit, tracking_limit
from detector.pipeline.names import TRACK_OBJECTS, track_task_id
from detector.pipeline.thumbnails import store_thumbnails
from detector.tracking import Tracker, TrackSummary, frame_rate_of

log = get_task_logger(__name__)

# Frames read, tracked and written back per transaction (and per progress report).
BATCH_FRAMES = 500
# A tracking step that reported progress this recently is under way: merge_chunks
# (which runs twice for most jobs: the chord's callback and the last chunk's send)
# does not start another. One that has been silent longer died, and the watchdog's
# merge starts it again.
TRACKING_LEASE = timedelta(minutes=2)


def hand_to_tracking(job_id: str, objects_total: int) -> bool:
    """Start the job's tracking step by taking its lease (``tracked_at``): the job must be
    processing and no tracking step may have reported progress within
    TRACKING_LEASE. Whether this caller started it (and so sends the task)."""
    with db.transaction() as session:
        return lease.take(
            session,
            Job,
            Job.id == job_id,
            Job.status == JobStatus.PROCESSING,
            stamp=Job.tracked_at,
            ttl=TRACKING_LEASE,
            frames_tracked=0,
            objects_total=objects_total,
        )


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


def analysed_frame_rate(job_id: str) -> float:
    """The rate of a job's analysed frames (`frame_rate_of` their timestamps), read
    as one column streamed into an array."""
    timestamps = db.session.scalars(
        select(FrameDetections.timestamp)
        .where(FrameDetections.job_id == job_id)
        .order_by(FrameDetections.index)
        .execution_options(yield_per=10_000)
    )
    return frame_rate_of(np.fromiter(timestamps, dtype=np.float64))


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
    """The tracking step of a processing job: track its frames (`track_stored_frames`),
    cut its tracks' thumbnails, and end the job as succeeded, on the condition that
    this run still holds the step."""
    session = db.session
    job = session.get(Job, job_id)
    if job is None or job.status is not JobStatus.PROCESSING or not job.track:
        return {"job_id": job_id, "skipped": "job is not processing or not tracked"}
    held = _start_over(session, job_id, JobStatus.PROCESSING)
    done = (
        None
        if held is None
        else track_stored_frames(job_id, JobStatus.PROCESSING, held, lambda _done: deadline.check())
    )
    if done is None:
        return {"job_id": job_id, "skipped": "job stopped while tracking"}
    tracked, tracks, held = done
    store_thumbnails(session, job_id, deadline)
    session.rollback()
    if not end_job(
        job_id,
        JobStatus.SUCCEEDED,
        among=[JobStatus.PROCESSING],
        where=[Job.frames_tracked == held[0], Job.tracked_at == held[1]],
        values={"tracks_total": tracks},
    ):
        return {"job_id": job_id, "skipped": "job stopped while tracking"}
    log.info("job=%s succeeded: %d frames tracked, %d tracks", job_id, tracked, tracks)
    return {"job_id": job_id, "frames": tracked, "tracks": tracks}


def track_succeeded_job(job_id: str, on_batch: Callable[[int], None]) -> bool:
    """Track a succeeded job that was not tracked (analytics need its tracks), as the
    tracking step would have, and mark it tracked; ``on_batch(frames_done)`` after
    each batch. False when another run holds its tracking now (it reported progress
    within TRACKING_LEASE) or the job is tracked already or no longer there."""
    session = db.session
    held = _start_over(session, job_id, JobStatus.SUCCEEDED, untracked=True)
    done = None if held is None else track_stored_frames(job_id, JobStatus.SUCCEEDED, held, on_batch)
    if done is None:
        return False
    tracked, tracks, held = done
    store_thumbnails(session, job_id)
    session.rollback()
    with db.transaction() as tx:
        took = lease.release(
            tx,
            Job,
            Job.id == job_id,
            Job.status == JobStatus.SUCCEEDED,
            Job.frames_tracked == held[0],
            Job.tracked_at == held[1],
            stamp=Job.tracked_at,
            track=True,
            tracks_total=tracks,
        )
    log.info("job=%s tracked after it succeeded: %d frames, %d tracks", job_id, tracked, tracks)
    return took


def track_stored_frames(
    job_id: str, status: JobStatus, held: Held, on_batch: Callable[[int], None]
) -> tuple[int, int, Held] | None:
    """Track the job's stored frames in batches of BATCH_FRAMES while it is ``status``
    and this run holds its tracking (``held``, from `_start_over`); ``on_batch(frames
    done)`` after each batch. The frames tracked, the tracks stored and the progress
    held at the end; None when the run lost the job.

    Each batch's transaction writes its frames' track ids, stores the tracks that
    ended in it and records progress, and commits only while this run still holds
    the step: its update of the job's progress is conditional on the values it
    wrote last, which a later run (a redelivery after this one went silent)
    overwrites when it starts over, deleting the tracks stored so far. So the
    tracker holds only the tracks it still follows, and the tracks of a job are
    never stored twice. After the last batch the tracks still followed are stored
    the same way."""
    session = db.session
    tracker = Tracker(analysed_frame_rate(job_id))
    session.rollback()
    tracked, tracks, last = 0, 0, -1
    while True:
        rows = session.execute(
            select(FrameDetections.index, FrameDetections.timestamp, FrameDetections.objects)
            .where(FrameDetections.job_id == job_id, FrameDetections.index > last)
            .order_by(FrameDetections.index)
            .limit(BATCH_FRAMES)
        ).all()
        if rows:
            changed = [
                {
                    "job_id": job_id,
                    "index": index,
                    "objects": tracker.update(
                        index, timestamp, Detections.from_objects(objects)
                    ).to_objects(),
                }
                for index, timestamp, objects in rows
            ]
            session.execute(update(FrameDetections), changed)
            tracks += _store(session, job_id, tracker.pop_finished())
            tracked += len(rows)
            last = rows[-1][0]
        else:
            tracks += _store(session, job_id, tracker.summaries())
        now = _report(session, job_id, status, held, tracked)
        if now is None:
            session.rollback()
            return None
        session.commit()
        held = now
        if not rows:
            return tracked, tracks, held
        on_batch(tracked)


#: The progress a tracking run wrote last: frames tracked, and when.
Held = tuple[int, datetime]


def _start_over(
    session: AnySession, job_id: str, status: JobStatus, *, untracked: bool = False
) -> Held | None:
    """Take the job's tracking from its first frame while it is ``status``: progress back
    to zero and the tracks of any earlier run deleted, in one transaction. With
    ``untracked``, only a job not tracked yet whose tracking lease has lapsed (no run
    reported progress within TRACKING_LEASE). None: not taken."""
    held = (0, utcnow())
    conditions = [Job.id == job_id, Job.status == status]
    if untracked:
        conditions.append(Job.track.is_(False))
    took = lease.take(
        session,
        Job,
        *conditions,
        stamp=Job.tracked_at,
        ttl=TRACKING_LEASE if untracked else None,
        now=held[1],
        frames_tracked=held[0],
    )
    if not took:
        session.rollback()
        return None
    session.execute(delete(Track).where(Track.job_id == job_id))
    session.commit()
    return held


def _report(session: AnySession, job_id: str, status: JobStatus, held: Held, tracked: int) -> Held | None:
    """Record ``tracked`` frames done, if the job is still ``status`` and this run still
    holds its tracking (the progress is what it wrote last). The progress now held,
    or None."""
    now = (tracked, utcnow())
    took = lease.renew(
        session,
        Job,
        Job.id == job_id,
        Job.status == status,
        Job.frames_tracked == held[0],
        Job.tracked_at == held[1],
        stamp=Job.tracked_at,
        now=now[1],
        frames_tracked=now[0],
    )
    return now if took else None


#: Track rows per INSERT statement.
INSERT_ROWS = 1_000


def _store(session: AnySession, job_id: str, summaries: list[TrackSummary]) -> int:
    """Insert these tracks of the job, INSERT_ROWS a statement; how many."""
    for start in range(0, len(summaries), INSERT_ROWS):
        batch = summaries[start : start + INSERT_ROWS]
        session.execute(insert(Track), [{"job_id": job_id, **summary.as_dict()} for summary in batch])
    return len(summaries)
