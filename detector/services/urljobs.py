"""Jobs from URLs and jobs with completion webhooks: checking the URLs users give,
creating a job whose video is downloaded, the webhook secret and deliveries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from detector.db import db
from detector.models import Job, JobDownload, JobStatus, WebhookEvent, WebhookSecret, utcnow
from detector.net import UnsafeURL, check_url
from detector.pipeline import download, webhooks
from detector.services.errors import InvalidInput
from detector.services.jobs import get_job, save_new_job
from detector.services.options import JobOptions
from detector.services.quota import check_room


def checked_url(field: str, raw: Any, *, allow_private: bool) -> str | None:
    """The URL of form field ``field`` once the guard accepts it; None when absent.

    Raises:
        InvalidInput: not an http(s) URL, unresolvable, or a non-public address.
    """
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    try:
        return check_url(str(raw).strip(), allow_private=allow_private).url
    except UnsafeURL as exc:
        raise InvalidInput(f"{field}: {exc}") from None


def create_url_job(
    *,
    owner_id: int,
    source_url: str,
    score_threshold: float,
    model_name: str,
    callback_url: str | None,
    attach: Callable[[Job], None] | None = None,
    options: JobOptions | None = None,
) -> Job:
    """Commit a job in ``downloading`` for a checked ``source_url`` and send download_video.

    ``attach(job)``, when given, runs in the job's transaction before its commit (an
    Idempotency-Key record, as for `detector.services.jobs.create_job`). A user already
    at or over STORAGE_QUOTA_MB is refused here; the download reserves the video's
    bytes when their number is known or as they arrive, and fails past the quota.

    Raises:
        QuotaExceeded: the user has no room left for another video.
    """
    check_room(owner_id)
    job = Job(
        owner_id=owner_id,
        original_filename=download.filename_of(source_url),
        storage_key="",
        status=JobStatus.DOWNLOADING,
        score_threshold=score_threshold,
        model_name=model_name,
        source_url=source_url,
        callback_url=callback_url,
        download=JobDownload(bytes_received=0, deliveries=0, progress_at=utcnow()),
        **(options or JobOptions()).as_columns(),
    )
    save_new_job(job, attach)
    download.send_download(job.id)
    return job


def signing_secret(user_id: int, *, rotate: bool = False) -> tuple[str, bool]:
    """The user's webhook signing secret, and whether it was created by this call."""
    return webhooks.signing_secret(user_id, rotate=rotate)


def first_signing_secret(user_id: int) -> str | None:
    """Create the user's webhook signing secret if they have none, committed at once;
    the secret when this call created it (to be shown now: it is never shown again),
    None when they had one. Commits the session."""
    session = db.session
    if session.get(WebhookSecret, user_id) is not None:
        return None
    row = WebhookSecret(user_id=user_id, secret=webhooks.new_secret(), created_at=utcnow())
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # a concurrent request made it, and shows it
        session.rollback()
        return None
    return row.secret


def webhook_deliveries(owner_id: int, job_id: str) -> dict[str, Any]:
    """The caller's job's callback_url and its events with every attempt."""
    job = get_job(owner_id, job_id)
    events = db.session.scalars(
        select(WebhookEvent).where(WebhookEvent.job_id == job.id).order_by(WebhookEvent.created_at)
    ).all()
    return {
        "job_id": job.id,
        "callback_url": job.callback_url,
        "events": [
            {
                "id": e.id,
                "type": e.type,
                "status": e.status,
                "created_at": e.created_at.isoformat(),
                "next_attempt_at": e.next_attempt_at.isoformat() if e.next_attempt_at else None,
                "delivered_at": e.delivered_at.isoformat() if e.delivered_at else None,
                "attempts": list(e.attempts),
            }
            for e in events
        ],
    }
