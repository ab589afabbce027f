"""Step 0 of a job created from a ``source_url``: `download_video` streams the video
into video storage, probes it like an upload, and moves the job to queued.

The download goes through the URL guard (detector.net), at most MAX_UPLOAD_MB:
refused when Content-Length says more, stopped when the stream passes it. A
broken transfer is tried again DOWNLOAD_ATTEMPTS times, resumed with ``Range``
where the server answers 206. The job's `JobDownload` row shows progress; the
worker downloading holds its lease (detector.pipeline.lease) and renews it with
each progress write, and the watchdog resends a download whose lease ran out,
then fails it. The
video's bytes are reserved in its owner's STORAGE_QUOTA_MB when the server
announces their number, else as they arrive (detector.pipeline.quota); a video
that would pass the quota fails the job, with the message a refused upload gets,
is not kept, and gives its reservation back.

A download has no limit on its total time: a large video over a slow link may
take hours. It is judged by progress instead: a try stalls when the server
answers nothing (no connection, no byte) for DOWNLOAD_TIMEOUT_SECONDS, and after
DOWNLOAD_ATTEMPTS stalled or broken tries the job fails saying how long nothing
came. The watchdog (`watch_downloads`) waits as long as a live download can go
without a progress write before it resends one (`silent_for`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from celery import shared_task
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy import select

from detector.config import Settings, current_settings
from detector.db import db
from detector.models import Job, JobDownload, JobStatus, utcnow
from detector.net import UnsafeURL, guarded_request
from detector.pipeline import lease, quota
from detector.pipeline.chunks import job_storage
from detector.pipeline.dispatch import change_status, send_process_video, stop_job
from detector.pipeline.names import DOWNLOAD_VIDEO, download_task_id
from detector.video import NotAVideoError, VideoError, probe

log = get_task_logger(__name__)

CHUNK_BYTES = 1024 * 1024
# Seconds between two progress writes (and looks at whether the job was cancelled).
PROGRESS_INTERVAL = 1.0
# The longest wait between two tries (they wait 1, 2, 4, ... seconds).
MAX_RETRY_WAIT = 30.0
# Content types that are never a video: refused before the body is read.
NOT_VIDEO_TYPES = ("text/", "application/json", "application/xml", "application/xhtml")
# A download of unknown size reserves its quota this far ahead of what arrived (one
# reservation write per this many bytes rather than per chunk).
RESERVE_AHEAD = 16 * CHUNK_BYTES


# The job of a download row is downloading (a condition of the row's lease).
_DOWNLOADING = (
    select(Job.id).where(Job.id == JobDownload.job_id, Job.status == JobStatus.DOWNLOADING).exists()
)


class DownloadFailed(Exception):
    """The URL gave no video file; the message says why."""


class OverQuota(DownloadFailed):
    """The downloaded video would take its owner past STORAGE_QUOTA_MB."""


class Stalled(Exception):
    """No byte of the body arrived for DOWNLOAD_TIMEOUT_SECONDS."""


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
    """Write the bytes so far (renewing the download's lease); raise JobStopped if the
    job is no longer downloading."""
    with db.transaction() as session:
        moved = lease.renew(
            session,
            JobDownload,
            JobDownload.job_id == job_id,
            _DOWNLOADING,
            stamp=JobDownload.progress_at,
            bytes_received=received,
            bytes_total=total,
        )
    if not moved:
        raise JobStopped()


def _body(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: each piece read is kept even if the connection breaks
    right after it (``iter_content`` would drop a piece cut short), so a retry resumes
    from the last byte received."""
    raw = response.raw
    while True:
        try:
            chunk = raw.read1(CHUNK_BYTES)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as exc:
            raise Stalled() from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise requests.ConnectionError(exc) from exc
        if not chunk:
            return
        yield chunk


def _too_large(limit: int, what: str) -> DownloadFailed:
    return DownloadFailed(
        f"the video is larger than the upload limit of {limit // (1024 * 1024)} MB (MAX_UPLOAD_MB): {what}"
    )


def fetch(
    job_id: str,
    url: str,
    out: IO[bytes],
    settings: Settings,
    room: Callable[[int, bool], None] | None = None,
) -> int:
    """Stream ``url`` into ``out``; the bytes written. Resumes with Range where it can.
    ``room(size, whole)`` is called before ``size`` bytes are written: with the whole
    size once Content-Length tells it, with the bytes so far as they arrive; it
    raises to refuse them."""
    limit = settings.max_content_length
    timeout = settings.download_timeout_seconds
    received = 0
    total: int | None = None
    last_error = ""
    # A stalled try's words: how long nothing came, and the setting that allows longer.
    waited = f"{timeout:g} s (DOWNLOAD_TIMEOUT_SECONDS; raise it for a server that pauses longer)"
    for attempt in range(1, max(1, settings.download_attempts) + 1):
        if attempt > 1:
            time.sleep(min(2.0 ** (attempt - 2), MAX_RETRY_WAIT))
            _progress(job_id, received, total)  # alive between tries (the watchdog looks)
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
        except requests.Timeout:
            last_error = f"the server answered nothing for {waited}"
            continue
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
                if room is not None:
                    room(total, True)
            _progress(job_id, received, total)
            last_write = time.monotonic()
            try:
                for chunk in _body(response):
                    received += len(chunk)
                    if received > limit:
                        raise _too_large(limit, f"more than {limit} bytes were sent")
                    if room is not None:
                        room(received, False)
                    out.write(chunk)
                    if time.monotonic() - last_write >= PROGRESS_INTERVAL:
                        _progress(job_id, received, total)
                        last_write = time.monotonic()
            except Stalled:
                out.flush()
                so_far = f"{received} of {total}" if total is not None else f"{received}"
                last_error = f"no bytes arrived for {waited}, after {so_far} bytes"
                continue
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
    raise DownloadFailed(
        f"gave up after {settings.download_attempts} tries (DOWNLOAD_ATTEMPTS): {last_error}"
    )


@shared_task(name=DOWNLOAD_VIDEO, ignore_result=True)
def download_video(job_id: str) -> dict[str, object]:
    """Download a job's source_url into storage, probe it, queue the job, send process_video."""
    settings = current_settings()
    with db.transaction() as session:
        took = lease.take(
            session,
            JobDownload,
            JobDownload.job_id == job_id,
            _DOWNLOADING,
            stamp=JobDownload.progress_at,
            count=JobDownload.deliveries,
            bytes_received=0,
        )
        job = session.get(Job, job_id)
        if not took or job is None or not job.source_url:
            return {"job_id": job_id, "skipped": "job is not downloading"}
        url = job.source_url
        owner_id = job.owner_id
    # Empty at first; it takes over what a run of this download that died still held.
    reservation = quota.reserve(owner_id, 0, job_id=job_id)

    def room(size: int, whole: bool) -> None:
        try:
            quota.grow(reservation, size, ahead=0 if whole else RESERVE_AHEAD, whole=whole)
        except quota.NoRoom as exc:
            raise OverQuota(str(exc)) from None

    storage = job_storage()
    upload = storage.new_upload()
    try:
        size = fetch(job_id, url, upload, settings, room)
        info = probe(storage.upload_source(upload), max_pixels=settings.max_frame_pixels)
    except JobStopped:
        storage.discard_upload(upload)
        quota.release(reservation)
        return {"job_id": job_id, "skipped": "job stopped during the download"}
    except (DownloadFailed, VideoError) as exc:
        storage.discard_upload(upload)
        quota.release(reservation)
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
        quota.release(reservation)
        raise
    key = storage.commit_upload(upload)
    stored: dict[str, Any] = {"storage_key": key, "video_bytes": size, **info.as_dict()}
    with db.transaction() as session:
        queued = change_status(session, job_id, JobStatus.QUEUED, among=[JobStatus.DOWNLOADING], **stored)
        # Refused only if another run of this download took the reservation over.
        refusal = quota.try_settle(session, reservation, size) if queued else None
    if refusal is not None:
        storage.delete(key)
        quota.release(reservation)
        stop_job(job_id, JobStatus.FAILED, refusal)
        return {"job_id": job_id, "failed": refusal}
    if not queued:
        storage.delete(key)
        quota.release(reservation)
        return {"job_id": job_id, "skipped": "job stopped during the download"}
    send_process_video(job_id)
    log.info("job=%s downloaded %d bytes; queued", job_id, size)
    return {"job_id": job_id, "bytes": size}


# Downloads started for one job before the watchdog fails it instead of resending.
MAX_DOWNLOAD_DELIVERIES = 3


def silent_for(settings: Settings, stall: timedelta) -> timedelta:
    """How long a live download may go without writing progress: a try that stalls
    (DOWNLOAD_TIMEOUT_SECONDS without a byte), then the wait before the next, or a
    connection and an answer each taking up to DOWNLOAD_TIMEOUT_SECONDS; and a margin
    (probing the file at the end). At least ``stall``."""
    timeout = settings.download_timeout_seconds
    return max(stall, timedelta(seconds=2 * timeout + MAX_RETRY_WAIT + 10))


def watch_downloads(stall: timedelta) -> tuple[int, int]:
    """The watchdog's part for downloading jobs. Returns (resent, failed).

    A download writes its progress at least every `silent_for` while it runs, however
    slow the link (and ends itself, with a message, when the server stalls). One that
    wrote none for that long is not running: its worker died or its message was lost.
    The watchdog takes its lease over and sends it again, or fails it after
    MAX_DOWNLOAD_DELIVERIES.
    """
    session = db.session
    now = utcnow()
    silent = silent_for(current_settings(), stall)
    stalled = session.execute(
        select(JobDownload.job_id, JobDownload.deliveries).where(
            _DOWNLOADING, lease.expired(JobDownload.progress_at, silent, now)
        )
    ).all()
    session.rollback()
    resent = failed = 0
    for job_id, deliveries in stalled:
        if deliveries < MAX_DOWNLOAD_DELIVERIES:
            with db.transaction() as s:  # its next look is `silent` from now
                took = lease.take(
                    s,
                    JobDownload,
                    JobDownload.job_id == job_id,
                    _DOWNLOADING,
                    stamp=JobDownload.progress_at,
                    ttl=silent,
                )
            if took:  # not renewed nor taken by another watchdog meanwhile
                send_download(job_id)
                resent += 1
        else:
            stop_job(
                job_id,
                JobStatus.FAILED,
                f"the download made no progress for {int(silent.total_seconds())} s, {deliveries} times "
                f"(its worker stopped each time: it crashed, was killed, or went down)",
            )
            failed += 1
    return resent, failed
