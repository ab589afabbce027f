"""Completion webhooks: when a job ends, one signed event is POSTed to its callback_url.

`job_ended` (called by the process whose update ended the job: dispatch.end_job)
records a `WebhookEvent` (one per job and kind, a unique constraint) and sends
`deliver_webhook(event_id)` to the processor queue. The task POSTs the event through the URL guard, records each attempt, and retries
with exponential back-off on network errors, timeouts and non-2xx answers, for
WEBHOOK_RETRY_HOURS: at least once, never blocking the pipeline. The watchdog
resends events whose retry message was lost (`resend_overdue_events`).

The body is signed with the owner's secret:
``Detector-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import time
from datetime import timedelta
from typing import Any

import requests
from celery import Task, shared_task
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from detector.config import current_settings
from detector.db import db
from detector.models import Job, JobStatus, WebhookEvent, WebhookSecret, utcnow
from detector.models.webhook import new_event_id
from detector.net import UnsafeURL, guarded_request, read_limited
from detector.pipeline.names import DELIVER_WEBHOOK

log = get_task_logger(__name__)

SIGNATURE_HEADER = "Detector-Signature"
EVENT_TYPES = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}
# The longest wait between two attempts (below RabbitMQ's 30-minute consumer_timeout,
# since a waiting retry is an unacknowledged message held by a worker).
MAX_BACKOFF_SECONDS = 15 * 60
# What is read of a receiver's answer (the status code is what counts).
RESPONSE_LIMIT = 64 * 1024
# The error text kept per attempt.
ERROR_LIMIT = 500


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signing_secret(user_id: int, *, rotate: bool = False) -> tuple[str, bool]:
    """The user's signing secret and whether it was created now (first need, or ``rotate``).

    Commits the session when it creates one.
    """
    session = db.session
    row = session.get(WebhookSecret, user_id)
    if row is not None and not rotate:
        return row.secret, False
    if row is None:
        row = WebhookSecret(user_id=user_id, secret=new_secret())
        session.add(row)
    else:
        row.secret = new_secret()
        row.created_at = utcnow()
    session.commit()
    return row.secret, True


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The Detector-Signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does (docs/api.md shows the same lines): a valid, fresh signature."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    expected = hmac.new(secret.encode(), f"{parts.get('t')}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = parts.get("t", "").isdecimal() and abs(time.time() - int(parts["t"])) <= tolerance
    return bool(fresh) and hmac.compare_digest(expected, parts.get("v1", ""))


def event_payload(job: Job, event: WebhookEvent) -> dict[str, Any]:
    """The event as it is POSTed (the same bytes on every attempt)."""
    return {
        "id": event.id,
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "job": {
            "id": job.id,
            "status": job.status.value,
            "frames_total": job.frames_total,
            "objects_total": job.objects_total,
            "error": job.error,
            "links": {"job": f"/api/jobs/{job.id}", "detections": f"/api/jobs/{job.id}/detections"},
        },
    }


def job_ended(job_id: str) -> None:
    """Record the ended job's event and send it, when the job has a callback_url.

    Never raises: a webhook must not break the step that ended the job (the
    watchdog sends an event whose message could not be sent).
    """
    try:
        session = db.session
        # Read afresh: the caller's session may hold the job as it was before it ended.
        job = session.get(Job, job_id, populate_existing=True)
        if job is None or not job.callback_url or job.status not in EVENT_TYPES:
            return
        kind = EVENT_TYPES[job.status]
        event = WebhookEvent(
            id=new_event_id(), job_id=job_id, type=kind, url=job.callback_url, created_at=utcnow()
        )
        event.payload = event_payload(job, event)
        event.attempts = []
        event.next_attempt_at = event.created_at
        session.add(event)
        try:
            session.commit()
        except IntegrityError:  # the job's event of this kind is recorded already
            session.rollback()
            return
        send_event(event.id)
    except Exception:
        db.session.rollback()
        log.exception("job=%s: its webhook event could not be recorded", job_id)


def send_event(event_id: str, countdown: float | None = None) -> None:
    try:
        current_app.extensions["celery"].send_task(
            DELIVER_WEBHOOK, args=[event_id], task_id=event_id, countdown=countdown
        )
    except Exception:
        log.exception("event=%s could not be queued now; the watchdog will resend it", event_id)


def backoff(attempt: int, first: float) -> float:
    """Seconds before attempt ``attempt + 1``: ``first``, doubling, capped at 15 minutes."""
    return float(min(first * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))


def _post(event: WebhookEvent, secret: str) -> tuple[int | None, str | None]:
    """One attempt: the status code (None when there was no answer) and the error, if any."""
    settings = current_settings()
    body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        "Detector-Event-Id": event.id,
    }
    timeout = settings.webhook_timeout_seconds
    try:
        response = guarded_request(
            "POST",
            event.url,
            allow_private=settings.allow_private_urls,
            timeout=(timeout, timeout),
            max_redirects=0,
            headers=headers,
            data=body,
        )
    except UnsafeURL as exc:
        return None, f"refused: {exc}"
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(requests.RequestException):  # the status code is the answer
        read_limited(response, RESPONSE_LIMIT)
    code = response.status_code
    if 200 <= code < 300:
        return code, None
    return code, f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")


@shared_task(name=DELIVER_WEBHOOK, bind=True, ignore_result=True, max_retries=None)
def deliver_webhook(self: Task, event_id: str) -> None:
    """POST the event; on failure retry with back-off until WEBHOOK_RETRY_HOURS have passed."""
    session = db.session
    event = session.get(WebhookEvent, event_id)
    if event is None or event.status != "pending":
        return
    job = session.get(Job, event.job_id)
    if job is None:
        return
    job_id = job.id
    secret, _ = signing_secret(job.owner_id)
    code, error = _post(event, secret)
    attempt = {
        "at": utcnow().isoformat(),
        "status_code": code,
        "error": error[:ERROR_LIMIT] if error else None,
    }
    recorded = record_attempt(event_id, attempt, delivered=error is None)
    if recorded is None:
        return  # deleted with its job meanwhile
    status, count, delay = recorded
    if error is None:
        log.info("job=%s event=%s delivered (HTTP %s)", job_id, event_id, code)
    elif status == "failed":
        log.warning("job=%s event=%s given up after %d attempts: %s", job_id, event_id, count, error)
    elif delay is not None:
        log.info(
            "job=%s event=%s attempt %d failed (%s); again in %.0f s", job_id, event_id, count, error, delay
        )
        raise self.retry(countdown=delay)


# Tries of one attempt's UPDATE that find the count changed by a concurrent delivery.
_RECORD_TRIES = 20


def record_attempt(
    event_id: str, attempt: dict[str, Any], *, delivered: bool
) -> tuple[str, int, float | None] | None:
    """Add ``attempt`` to the event's attempts and move its status on.

    Each try is one UPDATE that expects the attempt count it read (``WHERE
    attempt_count = n``); when another delivery of the same event (a retry and the
    watchdog's resend, say) recorded its attempt in between, the UPDATE changes no
    row and this reads again and retries, so no attempt is lost. Only a pending
    event changes status: delivered on a 2xx, failed when the next try would be past
    WEBHOOK_RETRY_HOURS. Commits.

    Returns:
        The event's status after this, its number of attempts, and the seconds
        before the next attempt (None: no next attempt from this delivery); None
        when the event is gone (deleted with its job).
    """
    settings = current_settings()
    session = db.session
    for _ in range(_RECORD_TRIES):
        session.rollback()
        row = session.execute(
            select(
                WebhookEvent.status,
                WebhookEvent.attempts,
                WebhookEvent.attempt_count,
                WebhookEvent.created_at,
            ).where(WebhookEvent.id == event_id)
        ).first()
        if row is None:
            return None
        attempts = [*(row.attempts or []), attempt]
        values: dict[str, Any] = {"attempts": attempts, "attempt_count": row.attempt_count + 1}
        status, delay = row.status, None
        if status == "pending":
            now = utcnow()
            if delivered:
                status = "delivered"
                values.update(status=status, delivered_at=now, next_attempt_at=None)
            else:
                delay = backoff(len(attempts), settings.webhook_backoff_seconds)
                deadline = row.created_at + timedelta(hours=settings.webhook_retry_hours)
                if now + timedelta(seconds=delay) > deadline:
                    status, delay = "failed", None
                    values.update(status=status, next_attempt_at=None)
                else:
                    values["next_attempt_at"] = now + timedelta(seconds=delay)
        result = session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id, WebhookEvent.attempt_count == row.attempt_count)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            session.commit()
            return status, len(attempts), delay
    session.rollback()
    raise RuntimeError(f"event {event_id}: its attempt could not be recorded in {_RECORD_TRIES} tries")


def resend_overdue_events(older_than: timedelta) -> int:
    """Send again pending events whose next attempt is overdue by ``older_than`` (the
    retry message was lost); give up on those past WEBHOOK_RETRY_HOURS."""
    session = db.session
    now = utcnow()
    hours = timedelta(hours=current_settings().webhook_retry_hours)
    overdue = session.scalars(
        select(WebhookEvent).where(
            WebhookEvent.status == "pending", WebhookEvent.next_attempt_at < now - older_than
        )
    ).all()
    resend = []
    for event in overdue:
        if event.created_at + hours < now:
            # Only if still pending: a delivery may have recorded its answer meanwhile.
            session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == event.id, WebhookEvent.status == "pending")
                .values(status="failed", next_attempt_at=None)
                .execution_options(synchronize_session=False)
            )
        else:
            resend.append(event.id)
    session.commit()
    for event_id in resend:
        send_event(event_id)
    return len(resend)
