"""The annotated video: `render_video` draws a succeeded job's detections into a copy
of its video (detector.render), on the ``render`` queue, when its owner asks.

A job has at most one render, its `JobRender` row (status, frames done, error);
the file is kept in video storage under its ``key`` and deleted with the job. The
worker drawing it holds the row's lease (detector.pipeline.lease) and renews it
with each progress report. A render whose worker died is sent again by the watchdog,
up to MAX_RENDER_DELIVERIES times, then failed with a message; a render never
stays queued or rendering without progress.

A render may take RENDER_BASE_SECONDS plus RENDER_SECONDS_PER_FRAME per frame of
the video (detector.pipeline.limits.render_limit): the limit goes with its message,
and the render checks it every PROGRESS_EVERY frames; past it, the render fails
saying so. The watchdog judges a render by the same budget (`watch_renders`): one
that is being drawn is never sent again while it moves at that pace, nor one
waiting for a render worker behind it.

The annotated video counts toward its owner's STORAGE_QUOTA_MB
(detector.pipeline.quota): room for the size of the video it is drawn from is
reserved before drawing starts, and its real size is checked when it is kept, in
the transaction that records it. A render that would pass the quota fails with
the message a refused upload gets; a failed render gives its room back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from sqlalchemy import select

from detector.config import Settings, current_settings
from detector.db import db
from detector.models import Job, JobRender, JobStatus, RenderStatus, utcnow
from detector.pipeline import lease, quota
from detector.pipeline.analytics import drawn_overlay
from detector.pipeline.chunks import job_storage
from detector.pipeline.limits import Deadline, LimitExceeded, TimeLimit, frame_weight, render_limit
from detector.pipeline.names import RENDER_VIDEO, render_task_id
from detector.pipeline.stored import stored_frames
from detector.render import PROGRESS_EVERY, RenderError, render_video
from detector.storage import StorageError
from detector.video import VideoError

log = get_task_logger(__name__)

# Renders started for one job before the watchdog fails it instead of resending.
MAX_RENDER_DELIVERIES = 3

#: The states of a render that is not over: waiting for a worker, or being drawn.
ACTIVE = (RenderStatus.QUEUED, RenderStatus.RENDERING)


class RenderStopped(Exception):
    """The job was deleted, or its render reset, while it was being drawn."""


def job_render_limit(job_id: str) -> TimeLimit:
    """The time the job's render may take: by its video's frames and their size."""
    row = db.session.execute(
        select(Job.frame_count, Job.width, Job.height).where(Job.id == job_id)
    ).one_or_none()
    frames, width, height = row if row is not None else (None, None, None)
    return render_limit(current_settings(), frames, width, height)


def send_render(job_id: str) -> None:
    """Send the job's render with its time limit (the worker's soft and hard limits, a
    grace period past the limit the render checks itself)."""
    limit = job_render_limit(job_id)
    render_job.apply_async(args=[job_id], task_id=render_task_id(job_id), **limit.options())


def _fail(job_id: str, message: str) -> None:
    with db.transaction() as session:
        lease.release(
            session,
            JobRender,
            JobRender.job_id == job_id,
            JobRender.status.in_(ACTIVE),
            stamp=JobRender.progress_at,
            status=RenderStatus.FAILED,
            error=message,
        )
        quota.release_job(session, job_id)  # the room reserved for the render
    log.warning("job=%s render failed: %s", job_id, message)


def _start(job_id: str) -> tuple[str, int] | None:
    """Take the render's lease and count this delivery; the video's storage key and
    the frames each analysed frame's boxes are held for. None: nothing to do.

    Taken only while the render is queued or being drawn (a delivery after a
    worker died takes it over), it has been started fewer than
    MAX_RENDER_DELIVERIES times, and the job has succeeded; otherwise the render
    fails saying which.
    """
    succeeded = select(Job.id).where(Job.id == JobRender.job_id, Job.status == JobStatus.SUCCEEDED).exists()
    with db.transaction() as session:
        took = lease.take(
            session,
            JobRender,
            JobRender.job_id == job_id,
            JobRender.status.in_(ACTIVE),
            JobRender.deliveries < MAX_RENDER_DELIVERIES,
            succeeded,
            stamp=JobRender.progress_at,
            count=JobRender.deliveries,
            status=RenderStatus.RENDERING,
            frames_done=0,
        )
        job = session.get(Job, job_id)
        render = session.get(JobRender, job_id, populate_existing=True)
        if job is None or render is None or render.status not in ACTIVE:
            return None
        if took:
            return job.storage_key, job.selection.hold_frames(job.fps)
        deliveries = render.deliveries if render.deliveries >= MAX_RENDER_DELIVERIES else -1
    if deliveries < 0:
        _fail(job_id, "the job has not succeeded, so there are no detections to draw")
    else:
        _fail(
            job_id,
            f"the render was started {deliveries} times and its worker died each time "
            f"(a crash, out of memory, or killed while stuck past its time limit)",
        )
    return None


@shared_task(name=RENDER_VIDEO, ignore_result=False)
def render_job(job_id: str) -> dict[str, Any]:
    """Draw the job's detections into a copy of its video and keep it in storage."""
    started = _start(job_id)
    if started is None:
        return {"job_id": job_id, "skipped": "no render to do"}
    key, hold = started
    deadline = Deadline(job_render_limit(job_id))
    db.session.rollback()
    try:
        reservation = quota.reserve_render(job_id)
    except quota.NoRoom as exc:
        _fail(job_id, str(exc))
        return {"job_id": job_id, "failed": str(exc)}
    storage = job_storage()

    def progress(done: int, total: int) -> None:
        if done < total:  # a render whose frames are all written is let finish
            deadline.check()
        with db.transaction() as session:
            moved = lease.renew(
                session,
                JobRender,
                JobRender.job_id == job_id,
                JobRender.status == RenderStatus.RENDERING,
                stamp=JobRender.progress_at,
                frames_done=done,
            )
        if not moved:
            raise RenderStopped()

    # A local file, for the encoder (an object store's render is uploaded when done).
    output = storage.new_scratch()
    try:
        stats = render_video(
            storage.source(key),
            output,
            stored_frames(job_id),
            hold_frames=hold,
            on_progress=progress,
            overlay=drawn_overlay(job_id),  # the analytics the render was asked to draw
        )
    except RenderStopped:
        storage.discard_scratch(output)
        return {"job_id": job_id, "skipped": "render stopped"}
    except (VideoError, RenderError, StorageError) as exc:
        storage.discard_scratch(output)
        _fail(job_id, f"the annotated video could not be made: {exc}")
        return {"job_id": job_id, "failed": str(exc)}
    except (LimitExceeded, SoftTimeLimitExceeded):
        # Its own check between frames, or the worker's soft limit (stuck in one call).
        storage.discard_scratch(output)
        message = deadline.limit.message()
        _fail(job_id, message)
        return {"job_id": job_id, "failed": message}
    except BaseException:
        storage.discard_scratch(output)
        raise
    render_bytes = output.stat().st_size
    try:
        render_key = storage.keep_scratch(output)
    finally:
        storage.discard_scratch(output)
    with db.transaction() as session:
        # The job's row first, as deleting the job and the retention sweep lock it.
        job = session.get(Job, job_id, with_for_update=True)
        render = session.get(JobRender, job_id, with_for_update=True, populate_existing=True)
        if job is None or render is None or render.status is not RenderStatus.RENDERING:
            storage.delete(render_key)
            return {"job_id": job_id, "skipped": "render stopped"}
        refusal = quota.try_settle(session, reservation, render_bytes, freed=render.bytes or 0)
        if refusal is not None:  # rolled back: the render is not kept
            storage.delete(render_key)
            _fail(job_id, refusal)
            return {"job_id": job_id, "failed": refusal}
        old = render.key
        lease.release(
            session,
            JobRender,
            JobRender.job_id == job_id,
            JobRender.status == RenderStatus.RENDERING,
            stamp=JobRender.progress_at,
            status=RenderStatus.SUCCEEDED,
            key=render_key,
            bytes=render_bytes,
            frames_done=stats.frames,
        )
    if old:
        storage.delete(old)
    log.info(
        "job=%s rendered %d frames in %.1f s (%.1f frames/s, %s)",
        job_id,
        stats.frames,
        stats.seconds,
        stats.frames / stats.seconds if stats.seconds else 0.0,
        stats.encoder,
    )
    return {"job_id": job_id, "frames": stats.frames, "seconds": stats.seconds, "encoder": stats.encoder}


def alive_for(settings: Settings, stall: timedelta, width: int | None, height: int | None) -> timedelta:
    """How long a render being drawn may go without progress and still be alive: its
    base time (reading the video's index before the first frame, finishing the file
    after the last) plus PROGRESS_EVERY frames at its budget per frame; at least ``stall``."""
    per_frame = settings.render_seconds_per_frame * frame_weight(width, height)
    return max(stall, timedelta(seconds=settings.render_base_seconds + PROGRESS_EVERY * per_frame))


def _take_over(job_id: str, ttl: timedelta, *, waiting: bool = False) -> bool:
    """The watchdog takes a render whose lease ran out (quiet for ``ttl``): its next look
    is a stall from now. ``waiting``: it waits behind renders being drawn, so its wait
    for a worker (``requested_at``, from which "never started" is counted) starts again
    too. Whether this watchdog took it (of two at once, one does)."""
    now = utcnow()
    with db.transaction() as session:
        return lease.take(
            session,
            JobRender,
            JobRender.job_id == job_id,
            JobRender.status.in_(ACTIVE),
            stamp=JobRender.progress_at,
            ttl=ttl,
            now=now,
            **({"requested_at": now} if waiting else {}),
        )


def watch_renders(stall: timedelta) -> tuple[int, int]:
    """The watchdog's part for renders. Returns (resent, failed).

    A render being drawn is stalled when it made no progress for longer than a live
    one can (`alive_for`: at least ``stall``, more for a render whose budget per frame
    or base time is longer): its worker died or its message was lost, so it is sent
    again, or failed after MAX_RENDER_DELIVERIES. A healthy render, however long, reports
    progress every PROGRESS_EVERY frames, and is never stalled.

    A queued render with no news for ``stall`` is sent again (its message was lost),
    and failed once it has waited MAX_RENDER_DELIVERIES stalls (no render worker
    runs) — but not while other renders are being drawn: then it waits its turn
    behind them, and its wait starts again.
    """
    settings = current_settings()
    session = db.session
    now = utcnow()
    renders = session.execute(
        select(
            JobRender.job_id,
            JobRender.deliveries,
            JobRender.status,
            JobRender.requested_at,
            JobRender.progress_at,
            Job.width,
            Job.height,
        )
        .join(Job, Job.id == JobRender.job_id)
        .where(JobRender.status.in_(ACTIVE))
    ).all()
    session.rollback()
    resent = failed = 0
    alive = {r.job_id: alive_for(settings, stall, r.width, r.height) for r in renders}
    drawing = [
        r.job_id
        for r in renders
        if r.status is RenderStatus.RENDERING and not lease.lapsed(r.progress_at, alive[r.job_id], now)
    ]
    never_started = now - stall * MAX_RENDER_DELIVERIES
    for r in renders:
        deliveries = r.deliveries
        ttl = stall
        if r.status is RenderStatus.RENDERING:
            if r.job_id in drawing:
                continue
            ttl = alive[r.job_id]
            if deliveries >= MAX_RENDER_DELIVERIES:
                _fail(
                    r.job_id,
                    f"the render made no progress for {int(ttl.total_seconds())} s, {deliveries} times "
                    f"(its worker died, or was stopped, each time)",
                )
                failed += 1
                continue
        elif not lease.lapsed(r.progress_at, stall, now):
            continue
        elif drawing:
            _take_over(r.job_id, stall, waiting=True)
            continue
        elif deliveries >= MAX_RENDER_DELIVERIES or r.requested_at < never_started:
            _fail(
                r.job_id,
                f"no render worker started the render in {int((stall * MAX_RENDER_DELIVERIES).total_seconds())} s "
                f"(is a worker serving the render queue running?)",
            )
            failed += 1
            continue
        if _take_over(r.job_id, ttl):
            send_render(r.job_id)
            resent += 1
    return resent, failed
