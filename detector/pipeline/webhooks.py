"""Completion webhooks: when a job ends, one signed event is POSTed to its callback_url.

`job_ended` (called where a job finishes: merge_chunks, stop_job) records a
`WebhookEvent` and sends `deliver_webhook(event_id)` to the processor queue. The
task POSTs the event through the URL guard, records each attempt, and retries
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
from sqlalchemy import select

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
        job = session.get(Job, job_id)
        if job is None or not job.callback_url or job.status not in EVENT_TYPES:
            return
        kind = EVENT_TYPES[job.status]
        existing = session.scalar(
            select(WebhookEvent).where(WebhookEvent.job_id == job_id, WebhookEvent.type == kind)
        )
        if existing is not None:
            return
        event = WebhookEvent(
            id=new_event_id(), job_id=job_id, type=kind, url=job.callback_url, created_at=utcnow()
        )
        event.payload = event_payload(job, event)
        event.attempts = []
        event.next_attempt_at = event.created_at
        session.add(event)
        session.commit()
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
    secret, _ = signing_secret(job.owner_id)
    code, error = _post(event, secret)
    now = utcnow()
    event.attempts = [
        *event.attempts,
        {"at": now.isoformat(), "status_code": code, "error": error[:ERROR_LIMIT] if error else None},
    ]
    settings = current_settings()
    if error is None:
        event.status, event.delivered_at, event.next_attempt_at = "delivered", now, None
        session.commit()
        log.info("job=%s event=%s delivered (HTTP %s)", job.id, event_id, code)
        return
    delay = backoff(len(event.attempts), settings.webhook_backoff_seconds)
    deadline = event.created_at + timedelta(hours=settings.webhook_retry_hours)
    if now + timedelta(seconds=delay) > deadline:
        event.status, event.next_attempt_at = "failed", None
        session.commit()
        log.warning(
            "job=%s event=%s given up after %d attempts: %s", job.id, event_id, len(event.attempts), error
        )
        return
    event.next_attempt_at = now + timedelta(seconds=delay)
    session.commit()
    log.info(
        "job=%s event=%s attempt %d failed (%s); again in %.0f s",
        job.id,
        event_id,
        len(event.attempts),
        error,
        delay,
    )
    raise self.retry(countdown=delay)


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
            event.status, event.next_attempt_at = "failed", None
        else:
            resend.append(event.id)
    session.commit()
    for event_id in resend:
        send_event(event_id)
    return len(resend)
