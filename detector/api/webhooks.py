"""Completion webhooks and jobs from URLs, on the API side.

- ``POST /api/auth/webhook-secret``: a new signing secret (the old one stops working),
  shown once.
- ``GET /api/jobs/<id>/webhook``: the job's callback_url, its events and every attempt.
- `submitted_urls` / `create_url_job`: the ``callback_url`` and ``source_url`` fields
  of POST /api/jobs (detector.api.jobs calls them).

A user's first ``callback_url`` creates their signing secret, committed at once, and
the answer to that request carries it in ``Detector-Webhook-Secret`` whatever the
answer is (`show_new_secret`): a submit refused later (a bad video, the quota) has
still shown the secret, which is never shown again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, g
from flask_restx import Namespace, Resource, fields
from werkzeug.datastructures import MultiDict

from detector.api.authn import SECURITY, authenticated, current_user, require_scopes
from detector.api.errors import error_model
from detector.api.fields import NullableInteger, NullableString
from detector.api.idempotency import idempotent
from detector.config import current_settings
from detector.db import db
from detector.models import Job, WebhookSecret
from detector.services import urljobs
from detector.services.errors import InvalidInput
from detector.services.options import JobOptions

SECRET_HEADER = "Detector-Webhook-Secret"


# Two namespaces, mounted at /auth and /jobs beside those of detector.api.auth and .jobs.
secret_ns = Namespace(
    "webhook-secret",
    description="The secret that signs your completion webhooks",
    decorators=[authenticated()],
)
ns = Namespace(
    "webhooks",
    description="Completion webhooks: each job's events and their delivery attempts.",
    decorators=[authenticated()],
)
for _ns in (secret_ns, ns):
    _ns.add_model(error_model.name, error_model)
UNAUTHORIZED = "Missing, malformed, expired or revoked access token or API key"

EVENT_ID = "evt_5d0c2a7e9b8f4c1d8e6a3b2f1c0d9e8a"
WHEN = "2026-11-22T18:24:31.902114+00:00"
secret_model = secret_ns.model(
    "WebhookSecret",
    {
        "secret": fields.String(
            required=True,
            description="Verifies the Detector-Signature header of your webhook events. "
            "Shown only now; the previous secret no longer signs anything.",
            example="whsec_3q2p8PZ0m5y0C1vXr8Qm0yq9d4Jx2G1p3s8cT0wVbN4",
        ),
        "created_at": fields.DateTime(
            required=True, description="When it was made (ISO 8601, UTC)", example=WHEN
        ),
    },
)
attempt_model = ns.model(
    "WebhookAttempt",
    {
        "at": fields.String(
            required=True, description="When the POST was made (ISO 8601, UTC)", example=WHEN
        ),
        "status_code": NullableInteger(
            required=True, description="The receiver's HTTP status; null when none came back", example=500
        ),
        "error": NullableString(
            required=True, description="Why it counts as failed; null for a 2xx", example="HTTP 500"
        ),
    },
)
event_model = ns.model(
    "WebhookEvent",
    {
        "id": fields.String(
            required=True, description="The event's id (the same on every attempt)", example=EVENT_ID
        ),
        "type": fields.String(
            required=True,
            enum=["job.succeeded", "job.failed", "job.cancelled"],
            description="What happened",
            example="job.succeeded",
        ),
        "status": fields.String(
            required=True,
            enum=["pending", "delivered", "failed"],
            description="pending (will be tried again), delivered (a 2xx) or failed (gave up)",
            example="delivered",
        ),
        "created_at": fields.String(required=True, description="When the job ended", example=WHEN),
        "next_attempt_at": NullableString(
            required=True, description="When it is tried next; null when done", example=WHEN
        ),
        "delivered_at": NullableString(
            required=True, description="When a 2xx came back; null until then", example=WHEN
        ),
        "attempts": fields.List(
            fields.Nested(attempt_model), required=True, description="Every POST, in order"
        ),
    },
)
deliveries_model = ns.model(
    "WebhookDeliveries",
    {
        "job_id": fields.String(
            required=True, description="The job", example="4f6c0b1d9a6e4d0e8f5a2b7c3d9e1f20"
        ),
        "callback_url": NullableString(
            required=True,
            description="Where its events go; null when none",
            example="https://example.com/hooks/detector",
        ),
        "events": fields.List(fields.Nested(event_model), required=True, description="Its events"),
    },
)


@secret_ns.route("/webhook-secret")
@secret_ns.response(401, UNAUTHORIZED, error_model)
class WebhookSecretResource(Resource):
    @secret_ns.doc(id="rotate_webhook_secret", security=SECURITY)
    @secret_ns.response(201, "The new secret, shown once", secret_model)
    @secret_ns.response(403, "Sent with an API key made without the `webhook_secret` scope", error_model)
    def post(self) -> tuple[dict[str, Any], int]:
        """Make a new webhook signing secret (replacing the old one) and show it once."""
        require_scopes("webhook_secret")
        secret, _ = urljobs.signing_secret(current_user.id, rotate=True)
        row = db.session.get(WebhookSecret, current_user.id)
        assert row is not None
        return {"secret": secret, "created_at": row.created_at.isoformat()}, 201


@ns.route("/<string:job_id>/webhook")
@ns.param("job_id", "The job's id, as create_job answered it")
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobWebhook(Resource):
    @ns.doc(id="get_job_webhook", security=SECURITY)
    @ns.response(200, "The job's webhook events and their attempts", deliveries_model)
    def get(self, job_id: str) -> dict[str, Any]:
        """The job's callback_url, its events and every delivery attempt (time, status, error)."""
        return urljobs.webhook_deliveries(current_user.id, job_id)


@dataclass
class SubmittedURLs:
    """The URL fields of a submit, checked by the guard."""

    source_url: str | None
    callback_url: str | None
    # The signing secret this submit created (the user's first callback_url), committed.
    new_secret: str | None = None

    def headers(self) -> dict[str, str]:
        """The secret, once, when this submit created it."""
        return {SECRET_HEADER: self.new_secret} if self.new_secret is not None else {}


def show_new_secret(response: Response) -> Response:
    """After every API request: the signing secret the request created, in its answer,
    whatever the answer (an after_request function of the API's blueprint)."""
    secret = g.pop("new_webhook_secret", None)
    if secret is not None:
        response.headers.setdefault(SECRET_HEADER, secret)
    return response


def submitted_urls(form: MultiDict[str, str], has_video: bool) -> SubmittedURLs:
    """Check ``source_url`` and ``callback_url``; exactly one of a video file and a source_url.

    Raises:
        InvalidInput: both or neither of video and source_url, or a URL the guard refuses.
    """
    allow = current_settings().allow_private_urls
    source = urljobs.checked_url("source_url", form.get("source_url"), allow_private=allow)
    callback = urljobs.checked_url("callback_url", form.get("callback_url"), allow_private=allow)
    if source is not None and has_video:
        raise InvalidInput("send either a 'video' file or a 'source_url', not both")
    urls = SubmittedURLs(source_url=source, callback_url=callback)
    if callback is not None:
        urls.new_secret = g.new_webhook_secret = urljobs.first_signing_secret(current_user.id)
    return urls


def create_url_job(
    urls: SubmittedURLs, threshold: float, model_name: str, options: JobOptions
) -> tuple[Job, bool]:
    """The job of a source_url submit (and whether an earlier request with its
    Idempotency-Key made it)."""
    source = urls.source_url
    assert source is not None
    return idempotent(
        current_user.id,
        lambda attach: urljobs.create_url_job(
            owner_id=current_user.id,
            source_url=source,
            score_threshold=threshold,
            model_name=model_name,
            callback_url=urls.callback_url,
            attach=attach,
            options=options,
        ),
        discard=lambda: None,
    )
