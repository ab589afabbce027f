"""`analyse_tracks`: one analytics spec over a succeeded job's stored tracks
(detector.analytics), on the processor queue, when the job's owner asks.

The task takes the job's id and the spec's id and re-reads both. It takes the
run's lease (detector.pipeline.lease, stamped in ``progress_at``) while the run is
queued, or running with no progress for ANALYTICS_LEASE (a delivery whose worker
died), so two deliveries never run at once. A job that
was not tracked is tracked first, as the tracking step tracks
(detector.pipeline.tracking.track_succeeded_job): one run at a time, the others
waiting for it. Then the job's frames are read in order, the
anchors collected, and the results stored as the lease is released: a spec
deleted meanwhile stays deleted.

Progress is frames read (and tracked) of the frames to read, written every
BATCH_FRAMES frames; the run checks its time limit at the same moments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from sqlalchemy import func, or_, select

from detector.analytics import analyse_frames, parse_spec
from detector.analytics.overlay import overlay_for
from detector.config import current_settings
from detector.db import db
from detector.models import (
    Analytics,
    AnalyticsStage,
    AnalyticsStatus,
    FrameDetections,
    Job,
    JobStatus,
    utcnow,
)
from detector.pipeline import lease
from detector.pipeline.limits import Deadline, LimitExceeded, TimeLimit
from detector.pipeline.names import ANALYSE_TRACKS, analytics_task_id
from detector.pipeline.stored import stored_frames
from detector.pipeline.tracking import track_succeeded_job
from detector.render import Overlay

log = get_task_logger(__name__)

# Frames read (or tracked) between progress reports and time-limit checks.
BATCH_FRAMES = 500
# A run that reported progress this recently is alive: another delivery does not
# take it over (and a repeated POST of its spec does not send it again).
ANALYTICS_LEASE = timedelta(minutes=2)
# Seconds between two looks at a job another run is tracking.
TRACKING_WAIT_S = 2.0
# Deliveries of one run before it is failed instead of started again.
MAX_ANALYTICS_DELIVERIES = 3


class AnalyticsStopped(Exception):
    """The spec (or its job) was deleted while it ran."""


def analytics_limit(frames: int | None, tracking: bool) -> TimeLimit:
    """The time one run may take: the tracking step's budget per frame, for each frame
    read, twice over when the job is tracked first."""
    settings = current_settings()
    units = max(0, frames or 0) * (2 if tracking else 1)
    return TimeLimit.of(
        "the analytics",
        settings.track_base_seconds,
        settings.track_seconds_per_frame,
        units,
        f"TRACK_BASE_SECONDS {settings.track_base_seconds:g} s + TRACK_SECONDS_PER_FRAME "
        f"{settings.track_seconds_per_frame:g} s for each of {units} frames read",
        "TRACK_SECONDS_PER_FRAME",
    )


def _job_limit(job_id: str) -> TimeLimit:
    row = db.session.execute(select(Job.frames_total, Job.track).where(Job.id == job_id)).one_or_none()
    frames, tracked = row if row is not None else (None, True)
    return analytics_limit(frames, not tracked)


def send_analytics(job_id: str, analytics_id: str) -> None:
    """Queue one run, with its time limit (a grace period past the one it checks itself)."""
    limit = _job_limit(job_id)
    analyse_tracks.apply_async(
        args=[job_id, analytics_id], task_id=analytics_task_id(job_id, analytics_id), **limit.options()
    )


def _mine(job_id: str, analytics_id: str) -> Any:
    return (Analytics.job_id == job_id) & (Analytics.id == analytics_id)


def _fail(job_id: str, analytics_id: str, message: str) -> None:
    now = utcnow()
    with db.transaction() as session:
        lease.release(
            session,
            Analytics,
            _mine(job_id, analytics_id),
            Analytics.status.in_([AnalyticsStatus.QUEUED, AnalyticsStatus.RUNNING]),
            stamp=Analytics.progress_at,
            now=now,
            status=AnalyticsStatus.FAILED,
            stage=AnalyticsStage.FAILED.value,
            error=message,
            finished_at=now,
        )
    log.warning("job=%s analytics=%s failed: %s", job_id, analytics_id, message)


def _start(job_id: str, analytics_id: str) -> bool:
    """Take the run's lease, queued or lapsed; whether this delivery runs it."""
    now = utcnow()
    with db.transaction() as session:
        took = lease.take(
            session,
            Analytics,
            _mine(job_id, analytics_id),
            or_(
                Analytics.status == AnalyticsStatus.QUEUED,
                (Analytics.status == AnalyticsStatus.RUNNING)
                & lease.expired(Analytics.progress_at, ANALYTICS_LEASE, now),
            ),
            stamp=Analytics.progress_at,
            count=Analytics.deliveries,
            now=now,
            status=AnalyticsStatus.RUNNING,
            started_at=now,
            frames_done=0,
            error=None,
        )
        deliveries = session.scalar(select(Analytics.deliveries).where(_mine(job_id, analytics_id)))
    if took and (deliveries or 0) > MAX_ANALYTICS_DELIVERIES:
        _fail(
            job_id,
            analytics_id,
            f"the analytics were started {MAX_ANALYTICS_DELIVERIES} times and their worker died each time",
        )
        return False
    return took


def _progress(job_id: str, analytics_id: str, done: int, total: int, stage: AnalyticsStage) -> None:
    with db.transaction() as session:
        moved = lease.renew(
            session,
            Analytics,
            _mine(job_id, analytics_id),
            Analytics.status == AnalyticsStatus.RUNNING,
            stamp=Analytics.progress_at,
            frames_done=done,
            frames_total=total,
            stage=stage.value,
        )
    if not moved:
        raise AnalyticsStopped()


def analysed_timestamps(job_id: str) -> list[float]:
    """The timestamps of a job's stored frames, in order."""
    return list(
        db.session.scalars(
            select(FrameDetections.timestamp)
            .where(FrameDetections.job_id == job_id)
            .order_by(FrameDetections.index)
        )
    )


def analytics_overlay(job_id: str, analytics_id: str | None) -> Callable[[int], Overlay] | None:
    """What a render of the job draws for the analytics ``analytics_id`` (zones, lines,
    running counts: detector.analytics.overlay), or None when it names none or that
    analytics has no results (yet)."""
    if analytics_id is None:
        return None
    row = db.session.execute(
        select(Analytics.spec, Analytics.results, Job.width, Job.height)
        .join(Job, Job.id == Analytics.job_id)
        .where(_mine(job_id, analytics_id), Analytics.status == AnalyticsStatus.SUCCEEDED)
    ).one_or_none()
    db.session.rollback()
    if row is None or row.results is None:
        return None
    return overlay_for(parse_spec(row.spec, row.width or 0, row.height or 0), row.results)


def drawn_overlay(job_id: str) -> Callable[[int], Overlay] | None:
    """The overlay of the analytics the job's render was asked to draw (``drawn``), if any."""
    drawn = db.session.scalar(
        select(Analytics.id).where(Analytics.job_id == job_id, Analytics.drawn.is_(True))
    )
    db.session.rollback()
    return analytics_overlay(job_id, drawn)


@shared_task(name=ANALYSE_TRACKS, ignore_result=False)
def analyse_tracks(job_id: str, analytics_id: str) -> dict[str, Any]:
    """Run one analytics spec over the job's tracks and store its results."""
    if not _start(job_id, analytics_id):
        return {"job_id": job_id, "analytics_id": analytics_id, "skipped": "nothing to run"}
    deadline = Deadline(_job_limit(job_id))
    try:
        return _run(job_id, analytics_id, deadline)
    except AnalyticsStopped:
        db.session.rollback()
        return {"job_id": job_id, "analytics_id": analytics_id, "skipped": "deleted while running"}
    except (LimitExceeded, SoftTimeLimitExceeded):
        db.session.rollback()
        _fail(job_id, analytics_id, deadline.limit.message())
        return {"job_id": job_id, "analytics_id": analytics_id, "failed": deadline.limit.message()}
    except Exception as exc:
        db.session.rollback()
        log.exception("job=%s analytics=%s", job_id, analytics_id)
        _fail(job_id, analytics_id, f"the analytics failed: {exc}")
        return {"job_id": job_id, "analytics_id": analytics_id, "failed": str(exc)}


def _run(job_id: str, analytics_id: str, deadline: Deadline) -> dict[str, Any]:
    session = db.session
    job = session.get(Job, job_id)
    row = session.get(Analytics, (job_id, analytics_id))
    if job is None or row is None:
        raise AnalyticsStopped()
    if job.status is not JobStatus.SUCCEEDED:
        message = f"job {job_id} is {job.status.value}; analytics run over a succeeded job's tracks"
        session.rollback()
        _fail(job_id, analytics_id, message)
        return {"job_id": job_id, "analytics_id": analytics_id, "failed": message}
    spec = parse_spec(row.spec, job.width or 0, job.height or 0)
    tracked = bool(job.track)
    frames = session.scalar(
        select(func.count()).select_from(FrameDetections).where(FrameDetections.job_id == job_id)
    )
    session.rollback()
    frames = int(frames or 0)
    total = frames if tracked else 2 * frames
    if not tracked:
        _progress(job_id, analytics_id, 0, total, AnalyticsStage.TRACKING)

        def tracking(done: int) -> None:
            _progress(job_id, analytics_id, done, total, AnalyticsStage.TRACKING)
            deadline.check()

        while not track_succeeded_job(job_id, tracking):
            # Another run is tracking the job (another spec's, say): wait for it to
            # finish, or take over once it has been silent for its lease.
            if db.session.scalar(select(Job.track).where(Job.id == job_id)) is not False:
                break
            db.session.rollback()
            time.sleep(TRACKING_WAIT_S)
            deadline.check()
        db.session.rollback()
    offset = total - frames
    _progress(job_id, analytics_id, offset, total, AnalyticsStage.ANALYSING)

    def reading(n: int) -> None:
        if n % BATCH_FRAMES == 0:
            _progress(job_id, analytics_id, offset + n, total, AnalyticsStage.ANALYSING)
            deadline.check()

    analysis = analyse_frames(spec, stored_frames(job_id), reading)
    now = utcnow()
    with db.transaction() as tx:
        done = lease.release(
            tx,
            Analytics,
            _mine(job_id, analytics_id),
            Analytics.status == AnalyticsStatus.RUNNING,
            stamp=Analytics.progress_at,
            now=now,
            status=AnalyticsStatus.SUCCEEDED,
            stage=AnalyticsStage.DONE.value,
            frames_done=total,
            frames_total=total,
            results=analysis.results,
            heatmap=analysis.heatmap.as_json(),
            finished_at=now,
        )
    if not done:
        raise AnalyticsStopped()
    log.info(
        "job=%s analytics=%s: %d frames, %d tracks, %d events in %.2f s",
        job_id,
        analytics_id,
        frames,
        analysis.results["tracks"],
        len(analysis.results["events"]),
        deadline.elapsed(),
    )
    return {"job_id": job_id, "analytics_id": analytics_id, "frames": frames, "seconds": deadline.elapsed()}
