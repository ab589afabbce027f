"""A job's videos: the original and its annotated render, the render's requests and
the short-lived media tokens that let a browser's ``<video>`` play them.

A ``<video>`` element cannot send an ``Authorization`` header, so its URL
carries a media token instead: signed with the app's SECRET_KEY
(itsdangerous), naming one user and one job, good for MEDIA_URL_SECONDS and
only for that job's video endpoints.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import update

from detector.db import db
from detector.models import Job, JobRender, JobStatus, RenderStatus, utcnow
from detector.pipeline.rendering import send_render
from detector.services.errors import Conflict, Gone, NotFound, ServiceError, TryAgainLater
from detector.services.jobs import get_job
from detector.storage import StorageError, VideoStorage
from detector.video import VideoSource

log = logging.getLogger(__name__)

_SALT = "detector.media"
# Seconds a client is told to wait before asking again when the broker refused a message.
BROKER_RETRY_AFTER = 30


class MediaTokenRefused(ServiceError):
    """A media token that is malformed, expired or not for this job."""

    status = 401
    code = "unauthorized"


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=_SALT)


def media_token(secret: str, user_id: int, job_id: str) -> str:
    """A token that plays ``job_id``'s videos as ``user_id``."""
    return str(_serializer(secret).dumps({"u": user_id, "j": job_id}))


def media_token_user(secret: str, token: str, job_id: str, max_age: int) -> int:
    """The user a media token plays ``job_id`` for.

    Raises:
        MediaTokenRefused: expired, tampered with, or for another job.
    """
    try:
        payload: Any = _serializer(secret).loads(token, max_age=max_age)
    except SignatureExpired:
        raise MediaTokenRefused("the media token has expired; ask for a new one") from None
    except BadSignature:
        raise MediaTokenRefused("the media token is not valid") from None
    if not isinstance(payload, dict) or payload.get("j") != job_id or not isinstance(payload.get("u"), int):
        raise MediaTokenRefused("the media token is not for this job")
    return int(payload["u"])


@dataclass(frozen=True)
class MediaFile:
    """A video to send: a local file, or an object-store object read in ranges."""

    source: VideoSource
    mimetype: str
    download_name: str


def _mimetype(filename: str) -> str:
    guessed, _ = mimetypes.guess_type(filename)
    return guessed if guessed and guessed.startswith("video/") else "application/octet-stream"


def _deleted(job: Job, what: str) -> Gone:
    """``what`` of the job was deleted with its stored videos (VIDEO_RETENTION_DAYS)."""
    assert job.video_deleted_at is not None
    return Gone(
        f"job {job.id}'s {what} was deleted on {job.video_deleted_at.isoformat()}, at the end of "
        f"its retention period; its detections, tracks and exports are still available"
    )


def original_video(owner_id: int, job_id: str, storage: VideoStorage) -> MediaFile:
    """The job's stored video, as uploaded.

    Raises:
        NotFound: no such job of the caller's, or its video is gone.
        Gone: its retention period deleted it.
        Conflict: the job's video is still being downloaded.
    """
    job = get_job(owner_id, job_id)
    if job.video_deleted_at is not None:
        raise _deleted(job, "video")
    if not job.storage_key:
        raise Conflict(f"job {job_id} is {job.status.value}; its video is not stored yet")
    try:
        source = storage.source(job.storage_key)
    except StorageError:
        raise NotFound(f"job {job_id}'s video is no longer stored") from None
    return MediaFile(source, _mimetype(job.original_filename), job.original_filename)


def annotated_video(owner_id: int, job_id: str, storage: VideoStorage) -> MediaFile:
    """The job's annotated video (MP4).

    Raises:
        NotFound: no such job, or no render was asked for.
        Gone: its retention period deleted the job's videos.
        Conflict: the render is not finished, or it failed.
    """
    job = get_job(owner_id, job_id)
    render = job.render
    if job.video_deleted_at is not None:
        raise _deleted(
            job, "annotated video" if render and render.key else "video, which an annotated video needs,"
        )
    if render is None:
        raise NotFound(f"job {job_id} has no annotated video; POST /api/jobs/{job_id}/render makes one")
    if render.status is not RenderStatus.SUCCEEDED or not render.key:
        detail = f": {render.error}" if render.error else ""
        raise Conflict(f"job {job_id}'s annotated video is {render.status.value}{detail}")
    try:
        source = storage.source(render.key)
    except StorageError:
        raise NotFound(f"job {job_id}'s annotated video is no longer stored") from None
    stem = Path(job.original_filename).stem or "video"
    return MediaFile(source, "video/mp4", f"{stem}.annotated.mp4")


def request_render(owner_id: int, job_id: str, *, again: bool = False) -> tuple[Job, bool]:
    """Start the job's annotated video, or find the one asked for before; whether it
    was started now. A failed render is started again, and, with ``again`` (what it
    draws has changed: detector.services.analytics), a succeeded one.

    Raises:
        Conflict: the job has not succeeded.
        Gone: its retention period deleted the job's video (the retention sweep
            never deletes a video a render is being drawn from: it skips those jobs).
        TryAgainLater: the broker did not take the render's message. The render is
            then marked failed (with that reason), so the same request sent again
            starts it again.
    """
    job = get_job(owner_id, job_id)
    if job.status is not JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status.value}; only a succeeded job can be rendered")
    session = db.session
    # The job's row is locked first: the retention sweep, deleting the job's videos,
    # waits for this request's render, or this request sees them deleted.
    current = session.get(Job, job.id, with_for_update=True, populate_existing=True)
    assert current is not None
    if current.video_deleted_at is not None:
        session.rollback()
        raise _deleted(current, "video, which an annotated video is drawn from,")
    render = session.get(JobRender, job.id, with_for_update=True, populate_existing=True)
    redraw = again and render is not None and render.status is RenderStatus.SUCCEEDED
    if render is not None and render.status is not RenderStatus.FAILED and not redraw:
        session.rollback()
        return current, False
    now = utcnow()
    if render is None:
        render = current.render = JobRender(job_id=job.id)
    render.status = RenderStatus.QUEUED
    render.error = None
    render.frames_done = 0
    render.deliveries = 0
    render.requested_at = render.progress_at = now
    session.commit()
    try:
        send_render(current.id)
    except Exception:
        log.exception("job=%s: the render could not be queued", current.id)
        # Only this request's render: one conditional UPDATE, on the time it asked.
        session.execute(
            update(JobRender)
            .where(
                JobRender.job_id == current.id,
                JobRender.status == RenderStatus.QUEUED,
                JobRender.requested_at == now,
            )
            .values(
                status=RenderStatus.FAILED,
                error="it could not be queued (the message broker was unavailable); ask again",
            )
        )
        session.commit()
        raise TryAgainLater(
            f"the render of job {current.id} could not be queued (the message broker is unavailable); "
            f"ask again in {BROKER_RETRY_AFTER} s",
            retry_after=BROKER_RETRY_AFTER,
        ) from None
    return current, True
