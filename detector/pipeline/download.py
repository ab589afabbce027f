"""Step 0 of a job created from a ``source_url``: `download_video` streams the video
into video storage, probes it like an upload, and moves the job to queued.

The download goes through the URL guard (detector.net), at most MAX_UPLOAD_MB:
refused when Content-Length says more, stopped when the stream passes it. A
broken transfer is tried again DOWNLOAD_ATTEMPTS times, resumed with ``Range``
where the server answers 206. The job's ``bytes_downloaded`` shows progress;
the watchdog resends a download that stopped moving, then fails it. A video
that would take its owner past STORAGE_QUOTA_MB fails the job, with the message
a refused upload gets, and is not kept (detector.pipeline.retention).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import IO
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from celery import shared_task
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy import select, update

from detector.config import Settings, current_settings
from detector.db import db
from detector.models import Job, JobStatus, utcnow
from detector.net import UnsafeURL, guarded_request
from detector.pipeline.chunks import job_storage
from detector.pipeline.dispatch import send_process_video, stop_job
from detector.pipeline.names import DOWNLOAD_VIDEO, download_task_id
from detector.pipeline.retention import quota_bytes, quota_refusal, storage_used
from detector.video import NotAVideoError, VideoError, probe

log = get_task_logger(__name__)

CHUNK_BYTES = 1024 * 1024
# Seconds between two progress writes (and looks at whether the job was cancelled).
PROGRESS_INTERVAL = 1.0
# Content types that are never a video: refused before the body is read.
NOT_VIDEO_TYPES = ("text/", "application/json", "application/xml", "application/xhtml")


class DownloadFailed(Exception):
    """The URL gave no video file; the message says why."""


class OverQuota(DownloadFailed):
    """The downloaded video would take its owner past STORAGE_QUOTA_MB."""


class JobStopped(Exception):
    """The job was cancelled or deleted during the download."""


def filename_of(url: str) -> str:
    """The file name a URL's path ends with ("video" when it has none)."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]).strip()
    return (name or "video")[:255]


def send_download(job_id: str) -> None:
    """Send ``download_video(job_id)``; if the broker cannot take it, the watchdog resends it."""
    try:
        current_app.extensions["celery"].send_task(
            DOWNLOAD_VIDEO, args=[job_id], task_id=download_task_id(job_id)
        )
    except Exception:
        log.exception("job=%s download could not be queued now; the watchdog will retry", job_id)


def _progress(job_id: str, received: int, total: int | None) -> None:
    """Write the bytes so far; raise JobStopped if the job is no longer downloading."""
    session = db.session
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(bytes_downloaded=received, bytes_total=total, download_progress_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    session.commit()
    if status is not JobStatus.DOWNLOADING:
        raise JobStopped()


def _body(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: each piece read is kept even if the connection breaks
    right after it (``iter_content`` would drop a piece cut short), so a retry resumes
    from the last byte received."""
    raw = response.raw
    while True:
        try:
            chunk = raw.read1(CHUNK_BYTES)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise requests.ConnectionError(exc) from exc
        if not chunk:
            return
        yield chunk


def _too_large(limit: int, what: str) -> DownloadFailed:
    return DownloadFailed(
        f"the video is larger than the upload limit of {limit // (1024 * 1024)} MB (MAX_UPLOAD_MB): {what}"
    )


def fetch(job_id: str, url: str, out: IO[bytes], settings: Settings) -> int:
    """Stream ``url`` into ``out``; the bytes written. Resumes with Range where it can."""
    limit = settings.max_content_length
    timeout = settings.download_timeout_seconds
    received = 0
    total: int | None = None
    last_error = ""
    for attempt in range(1, max(1, settings.download_attempts) + 1):
        if attempt > 1:
            time.sleep(min(2.0 ** (attempt - 2), 30.0))
        headers = {"Accept-Encoding": "identity"}
        if received:
            headers["Range"] = f"bytes={received}-"
        try:
            response = guarded_request(
                "GET",
                url,
                allow_private=settings.allow_private_urls,
                timeout=(timeout, timeout),
                max_redirects=settings.url_max_redirects,
                headers=headers,
            )
        except UnsafeURL as exc:
            raise DownloadFailed(f"the URL is refused: {exc}") from None
        except requests.RequestException as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            continue
        with response:
            code = response.status_code
            if code == 206 and received:
                start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-", 1)[0]
                if start != str(received):  # not the range asked for: start over
                    out.seek(0)
                    out.truncate()
                    received = 0
                    last_error = "the server resumed at the wrong offset"
                    continue
            elif code == 200:
                if received:  # no Range support: start over
                    out.seek(0)
                    out.truncate()
                    received = 0
            elif code >= 500 or code in (408, 429):
                last_error = f"the server answered HTTP {code}"
                continue
            else:
                raise DownloadFailed(f"the server answered HTTP {code}")
            kind = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if kind.startswith(NOT_VIDEO_TYPES):
                raise DownloadFailed(f"the URL gave {kind}, not a video")
            length = response.headers.get("Content-Length")
            if length is not None and length.isdecimal():
                total = received + int(length)
                if total > limit:
                    raise _too_large(limit, f"the server announces {total} bytes")
            _progress(job_id, received, total)
            last_write = time.monotonic()
            try:
                for chunk in _body(response):
                    received += len(chunk)
                    if received > limit:
                        raise _too_large(limit, f"more than {limit} bytes were sent")
                    out.write(chunk)
                    if time.monotonic() - last_write >= PROGRESS_INTERVAL:
                        _progress(job_id, received, total)
                        last_write = time.monotonic()
            except requests.RequestException as exc:
                out.flush()
                last_error = f"the transfer broke after {received} bytes: {type(exc).__name__}: {exc}"
                continue
            if total is not None and received < total:
                last_error = f"the transfer ended after {received} of {total} bytes"
                continue
            out.flush()
            _progress(job_id, received, total if total is not None else received)
            return received
    raise DownloadFailed(f"gave up after {settings.download_attempts} tries: {last_error}")


@shared_task(name=DOWNLOAD_VIDEO, ignore_result=True)
def download_video(job_id: str) -> dict[str, object]:
    """Download a job's source_url into storage, probe it, queue the job, send process_video."""
    settings = current_settings()
    with db.transaction() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status is not JobStatus.DOWNLOADING or not job.source_url:
            return {"job_id": job_id, "skipped": "job is not downloading"}
        job.download_deliveries = (job.download_deliveries or 0) + 1
        job.download_progress_at = utcnow()
        job.bytes_downloaded = 0
        url = job.source_url
    storage = job_storage()
    upload = storage.new_upload()
    try:
        size = fetch(job_id, url, upload, settings)
        if (refusal := _over_quota(job_id, size, settings)) is not None:
            raise OverQuota(refusal)
        info = probe(upload.name, max_pixels=settings.max_frame_pixels)
    except JobStopped:
        storage.discard_upload(upload)
        return {"job_id": job_id, "skipped": "job stopped during the download"}
    except (DownloadFailed, VideoError) as exc:
        storage.discard_upload(upload)
        if isinstance(exc, OverQuota):
            message = str(exc)  # as a refused upload says it
        elif isinstance(exc, NotAVideoError):
            message = f"the source_url did not give a video: {exc}"
        elif isinstance(exc, VideoError):
            message = f"the source_url gave an unusable video: {exc}"
        else:
            message = f"the video could not be downloaded: {exc}"
        stop_job(job_id, JobStatus.FAILED, message)
        return {"job_id": job_id, "failed": message}
    except BaseException:
        storage.discard_upload(upload)
        raise
    key = storage.commit_upload(upload)
    with db.transaction() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status is not JobStatus.DOWNLOADING:
            storage.delete(key)
            return {"job_id": job_id, "skipped": "job stopped during the download"}
        job.storage_key = key
        job.video_bytes = size
        for name, value in info.as_dict().items():
            setattr(job, name, value)
        job.status = JobStatus.QUEUED
    send_process_video(job_id)
    log.info("job=%s downloaded %d bytes; queued", job_id, size)
    return {"job_id": job_id, "bytes": size}


def _over_quota(job_id: str, size: int, settings: Settings) -> str | None:
    """Why keeping a downloaded video of ``size`` bytes takes the job's owner past
    STORAGE_QUOTA_MB (the same message as a refused upload); None when it fits."""
    quota = quota_bytes(settings)
    if quota is None:
        return None
    session = db.session
    owner_id = session.scalar(select(Job.owner_id).where(Job.id == job_id))
    refusal = None if owner_id is None else quota_refusal(storage_used(owner_id), quota, size)
    session.rollback()
    return refusal


# Downloads started for one job before the watchdog fails it instead of resending.
MAX_DOWNLOAD_DELIVERIES = 3


def watch_downloads(stall: timedelta) -> tuple[int, int]:
    """The watchdog's part for downloading jobs: one whose download made no progress
    for ``stall`` is sent again (its worker died, its message was lost), or failed
    after MAX_DOWNLOAD_DELIVERIES. Returns (resent, failed)."""
    session = db.session
    now = utcnow()
    resent = failed = 0
    jobs = session.scalars(select(Job).where(Job.status == JobStatus.DOWNLOADING)).all()
    stalled = [
        (job.id, job.download_deliveries or 0, now - (job.download_progress_at or job.created_at))
        for job in jobs
        if now - (job.download_progress_at or job.created_at) > stall
    ]
    session.rollback()
    for job_id, deliveries, idle in stalled:
        if deliveries < MAX_DOWNLOAD_DELIVERIES:
            send_download(job_id)
            resent += 1
        else:
            stop_job(
                job_id,
                JobStatus.FAILED,
                f"the download made no progress for {int(idle.total_seconds())} s after "
                f"{deliveries} tries (workers down or the server stalled)",
            )
            failed += 1
    return resent, failed
