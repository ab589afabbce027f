"""The annotated video: `render_video` draws a succeeded job's detections into a copy
of its video (detector.render), on the ``render`` queue, when its owner asks.

A job has at most one render. Its state is on the job (``render_status``,
frames done, error); the file is kept in video storage under ``render_key`` and
deleted with the job. A render whose worker died is sent again by the watchdog,
up to MAX_RENDER_DELIVERIES times, then failed with a message; a render never
stays queued or rendering without progress.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from celery import shared_task
from celery.utils.log import get_task_logger
from sqlalchemy import CursorResult, select, update

from detector.db import db
from detector.models import Job, JobStatus, RenderStatus, utcnow
from detector.pipeline.chunks import job_storage
from detector.pipeline.names import RENDER_VIDEO, render_task_id
from detector.pipeline.stored import stored_frames
from detector.render import RenderError, render_video
from detector.storage import StorageError
from detector.video import VideoError

log = get_task_logger(__name__)

# Renders started for one job before the watchdog fails it instead of resending.
MAX_RENDER_DELIVERIES = 3


class RenderStopped(Exception):
    """The job was deleted, or its render reset, while it was being drawn."""


def send_render(job_id: str) -> None:
    render_job.apply_async(args=[job_id], task_id=render_task_id(job_id))


def _fail(job_id: str, message: str) -> None:
    with db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.render_status.in_([RenderStatus.QUEUED, RenderStatus.RENDERING]))
            .values(render_status=RenderStatus.FAILED, render_error=message, render_progress_at=utcnow())
        )
    log.warning("job=%s render failed: %s", job_id, message)


def _start(job_id: str) -> tuple[str, int] | None:
    """Mark the render started and count this delivery; the video's storage key and
    the frames each analysed frame's boxes are held for. None: nothing to do."""
    with db.transaction() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.render_status not in (RenderStatus.QUEUED, RenderStatus.RENDERING):
            return None
        job.render_deliveries = (job.render_deliveries or 0) + 1
        if job.render_deliveries > MAX_RENDER_DELIVERIES:
            deliveries = job.render_deliveries - 1
        elif job.status is not JobStatus.SUCCEEDED:
            deliveries = -1
        else:
            job.render_status = RenderStatus.RENDERING
            job.render_frames_done = 0
            job.render_progress_at = utcnow()
            return job.storage_key, job.selection.hold_frames(job.fps)
    if deliveries < 0:
        _fail(job_id, "the job has not succeeded, so there are no detections to draw")
    else:
        _fail(job_id, f"the render was started {deliveries} times and its worker died each time")
    return None


@shared_task(name=RENDER_VIDEO, ignore_result=False)
def render_job(job_id: str) -> dict[str, Any]:
    """Draw the job's detections into a copy of its video and keep it in storage."""
    started = _start(job_id)
    if started is None:
        return {"job_id": job_id, "skipped": "no render to do"}
    key, hold = started
    storage = job_storage()

    def progress(done: int, total: int) -> None:
        with db.transaction() as session:
            moved = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.render_status == RenderStatus.RENDERING)
                .values(render_frames_done=done, render_progress_at=utcnow())
            )
        if cast("CursorResult[Any]", moved).rowcount == 0:
            raise RenderStopped()

    output = storage.new_upload()
    output.close()
    try:
        stats = render_video(
            storage.path(key),
            Path(output.name),
            stored_frames(job_id),
            hold_frames=hold,
            on_progress=progress,
        )
    except RenderStopped:
        storage.discard_upload(output)
        return {"job_id": job_id, "skipped": "render stopped"}
    except (VideoError, RenderError, StorageError) as exc:
        storage.discard_upload(output)
        _fail(job_id, f"the annotated video could not be made: {exc}")
        return {"job_id": job_id, "failed": str(exc)}
    except BaseException:
        storage.discard_upload(output)
        raise
    render_bytes = Path(output.name).stat().st_size
    render_key = storage.commit_upload(output)
    with db.transaction() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.render_status is not RenderStatus.RENDERING:
            storage.delete(render_key)
            return {"job_id": job_id, "skipped": "render stopped"}
        old, job.render_key = job.render_key, render_key
        job.render_bytes = render_bytes
        job.render_status = RenderStatus.SUCCEEDED
        job.render_frames_done = stats.frames
        job.render_progress_at = utcnow()
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


def watch_renders(stall: timedelta) -> tuple[int, int]:
    """The watchdog's part for renders: one without progress for ``stall`` is sent
    again (its worker died or its message was lost), or failed after
    MAX_RENDER_DELIVERIES. Returns (resent, failed)."""
    session = db.session
    cutoff = utcnow() - stall
    stalled = session.execute(
        select(Job.id, Job.render_deliveries, Job.render_status, Job.render_requested_at).where(
            Job.render_status.in_([RenderStatus.QUEUED, RenderStatus.RENDERING]),
            Job.render_progress_at < cutoff,
        )
    ).all()
    session.rollback()
    resent = failed = 0
    # A render no worker ever started (none serves the render queue, or every
    # message was lost) is failed too, once it has waited as long as
    # MAX_RENDER_DELIVERIES stalls.
    never_started = utcnow() - stall * MAX_RENDER_DELIVERIES
    for job_id, deliveries, status, requested_at in stalled:
        if (deliveries or 0) >= MAX_RENDER_DELIVERIES:
            _fail(
                job_id, f"the render made no progress for {int(stall.total_seconds())} s, {deliveries} times"
            )
            failed += 1
        elif status is RenderStatus.QUEUED and requested_at is not None and requested_at < never_started:
            _fail(
                job_id,
                f"no render worker started the render in {int((stall * MAX_RENDER_DELIVERIES).total_seconds())} s "
                f"(is a worker serving the render queue running?)",
            )
            failed += 1
        else:
            with db.transaction() as s:
                s.execute(update(Job).where(Job.id == job_id).values(render_progress_at=utcnow()))
            send_render(job_id)
            resent += 1
    return resent, failed
