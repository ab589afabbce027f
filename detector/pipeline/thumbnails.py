"""The tracking step's thumbnails: after a job's frames are tracked and its tracks
stored, `store_thumbnails` cuts each track's best box (kept with the track) out of
the video (detector.tracking.thumbnails) and stores them in ``track_thumbnails``.

Thumbnails are a convenience: a video that cannot be read, or a tracking step out of
time for them, leaves tracks without them, and the job succeeds all the same. They
take THUMBNAIL_SECONDS at most, well inside the tracking step's lease (a step silent
for longer is started again: detector.pipeline.tracking.TRACKING_LEASE).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from typing import cast

from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, scoped_session

from detector.models import Chunk, Job, Track, TrackThumbnail
from detector.pipeline.limits import Deadline
from detector.storage import StorageError, VideoStorage
from detector.tracking.thumbnails import BestBox, BestBoxes, Thumbnail, make_thumbnails
from detector.video import DecodeStats, VideoError

log = get_task_logger(__name__)

#: A session, or the thread's scoped session (db.session).
AnySession = Session | scoped_session[Session]

# Thumbnails written per transaction.
BATCH = 100
# Tracks whose best boxes are read (and their frames decoded) at a time.
TRACKS_READ = 1_000
# Seconds a tracking step spends on thumbnails at most.
THUMBNAIL_SECONDS = 60.0
# The share of the tracking step's time limit after which no more thumbnails are made.
TIME_SHARE = 0.9


def frame_pts(session: AnySession, job_id: str, frames: Iterable[int]) -> dict[int, int]:
    """The presentation timestamps of some of a job's analysed ``frames``, from the
    chunk plans: the chunks' bounds (three numbers each), then the frame lists of
    only the chunks that hold one of ``frames``."""
    wanted = sorted(set(frames))
    bounds = session.execute(
        select(Chunk.index, Chunk.start_frame, Chunk.end_frame)
        .where(Chunk.job_id == job_id)
        .order_by(Chunk.start_frame)
    ).all()
    starts = [start for _, start, _ in bounds]
    holding: set[int] = set()
    for frame in wanted:
        position = bisect.bisect_right(starts, frame) - 1
        if position >= 0 and frame < bounds[position][2]:
            holding.add(bounds[position][0])
    found: dict[int, int] = {}
    if not holding:
        return found
    wanted_set = set(wanted)
    for chunk in session.scalars(select(Chunk).where(Chunk.job_id == job_id, Chunk.index.in_(holding))):
        plan = chunk.plan()
        for frame, pts in zip(plan.frames, plan.frame_pts, strict=True):
            if frame in wanted_set:
                found[frame] = pts
    return found


def _upsert(session: AnySession, job_id: str, made: list[Thumbnail]) -> None:
    """Write ``made``, replacing any row of the same track (a run of the step beside this one)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(TrackThumbnail).values(
        [{"job_id": job_id, "track_id": t.track_id, "frame": t.frame, "jpeg": t.jpeg} for t in made]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[TrackThumbnail.job_id, TrackThumbnail.track_id],
            set_={"frame": statement.excluded.frame, "jpeg": statement.excluded.jpeg},
        )
    )


def _until(deadline: Deadline | None) -> float:
    """The monotonic time after which no more thumbnails are made."""
    until = time.monotonic() + THUMBNAIL_SECONDS
    if deadline is not None:
        until = min(until, time.monotonic() + TIME_SHARE * deadline.limit.seconds - deadline.elapsed())
    return until


def _best_boxes(session: AnySession, job_id: str, after: tuple[int, int], count: int) -> BestBoxes:
    """The best boxes of the job's next ``count`` stored tracks by (best frame, track id),
    after ``after``."""
    rows = session.execute(
        select(Track.track_id, Track.best_frame, Track.best_score, Track.best_box)
        .where(
            Track.job_id == job_id,
            Track.best_frame.is_not(None),
            tuple_(Track.best_frame, Track.track_id) > tuple_(*after),
        )
        .order_by(Track.best_frame, Track.track_id)
        .limit(count)
    ).all()
    # The query selects tracks with a best frame: they have a best score and box too.
    return BestBoxes(
        {
            track_id: BestBox(frame, (box[0], box[1], box[2], box[3]), score)
            for track_id, frame, score, box in cast("list[tuple[int, int, float, list[float]]]", rows)
        }
    )


def store_thumbnails(
    session: AnySession,
    job_id: str,
    deadline: Deadline | None = None,
    storage: VideoStorage | None = None,
) -> int:
    """Replace the job's thumbnails with one for each of its stored tracks, cut from the
    track's best box, TRACKS_READ tracks at a time in the order of their frames and
    committed in batches of BATCH; the number stored. Stops early, keeping those made,
    when the video cannot be read, after THUMBNAIL_SECONDS, or once ``deadline`` has
    used TIME_SHARE of its limit."""
    until = _until(deadline)
    job = session.get(Job, job_id)
    if job is None:
        return 0
    session.execute(delete(TrackThumbnail).where(TrackThumbnail.job_id == job_id))
    session.commit()
    if job.video_deleted_at is not None or not job.storage_key:
        return 0
    storage = storage if storage is not None else current_app.extensions["video_storage"]
    stats = DecodeStats()
    stored, made, why, after = 0, [], "done", (-1, -1)
    try:
        path = storage.source(job.storage_key)
        while why == "done":
            boxes = _best_boxes(session, job_id, after, TRACKS_READ)
            if not len(boxes):
                break
            last_id, last = boxes.items()[-1]
            after = (last.frame, last_id)
            pts = frame_pts(session, job_id, boxes.frames())
            session.commit()
            for thumbnail in make_thumbnails(path, boxes, pts, rotation=job.rotation or 0, stats=stats):
                made.append(thumbnail)
                if len(made) >= BATCH:
                    _upsert(session, job_id, made)
                    session.commit()
                    stored, made = stored + len(made), []
                if time.monotonic() > until:
                    why = "out of time"
                    break
    except (VideoError, StorageError, OSError) as exc:
        why = f"stopped: {exc}"
    if made:
        _upsert(session, job_id, made)
        session.commit()
        stored += len(made)
    log.info("job=%s %d thumbnails, %d frames decoded (%s)", job_id, stored, stats.decoded, why)
    return stored
