"""Every error the service returns is JSON in one model: ``{"error": code, "message": text}``.

``error`` is a short machine-readable code (``not_found``, ``invalid_input``,
``unauthorized``, ...); ``message`` says what went wrong in words.

Domain errors map to their status here, in one place. JWT errors become 401
(flask-restx would otherwise turn them into 500s unless exceptions propagate).
The same body is used outside the API's resources too: unmatched URLs (404),
wrong methods (405) and trailing-slash redirects (308, with a ``Location``)
anywhere under the service answer JSON, never an HTML page.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from flask_jwt_extended.exceptions import JWTExtendedException
from flask_restx import Api, Model, fields
from jwt.exceptions import ExpiredSignatureError, PyJWTError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, TooManyRequests
from werkzeug.routing import RequestRedirect

from detector.services.errors import ServiceError

error_model = Model(
    "Error",
    {
        "error": fields.String(
            required=True,
            description="A short machine-readable code for the kind of error",
            example="not_found",
        ),
        "message": fields.String(
            required=True,
            description="What went wrong, in words",
            example="job 4f6c0b1d9a6e4d0e8f5a2b7c3d9e1f20 not found",
        ),
        "status": fields.String(
            description="With error job_ended: the state the job had already ended in",
            enum=["succeeded", "failed", "cancelled"],
            example="succeeded",
        ),
    },
)

Body = dict[str, Any]


def error_body(error: str, message: str) -> Body:
    """An error in the service's one error model."""
    return {"error": error, "message": message}


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def _too_large_message() -> str:
    """Why a request was too large, with the limit it broke."""
    config = current_app.config
    upload_limit = config.get("MAX_CONTENT_LENGTH")
    length = request.content_length
    if upload_limit is not None and (length is None or length > upload_limit):
        return f"the upload is larger than the limit of {_megabytes(int(upload_limit))} (MAX_UPLOAD_MB)" + (
            f"; this request has {_megabytes(length)}" if length is not None else ""
        )
    # Flask limits the text fields of a form separately from the files in it.
    form_limit = config.get("MAX_FORM_MEMORY_SIZE")
    if form_limit:
        return f"a form field is larger than the limit of {int(form_limit)} bytes"
    return "the request is too large"


def _retry_after_seconds() -> int:
    """Seconds until the rate limit hit by this request lets the client in again."""
    from detector.api.extensions import limiter

    limit = limiter.current_limit
    if limit is None:
        return 60
    return max(1, math.ceil(limit.reset_at - time.time()))


def http_error(exc: HTTPException) -> tuple[Body, int, dict[str, str]]:
    """Any HTTP error (404, 405, 413, 429, ...) in the error model, with its headers."""
    status = exc.code or 500
    code = (exc.name or "error").lower().replace(" ", "_")
    headers: dict[str, str] = {}
    if isinstance(exc, RequestEntityTooLarge):
        message = _too_large_message()
    elif isinstance(exc, TooManyRequests):
        retry_after = _retry_after_seconds()
        headers["Retry-After"] = str(retry_after)
        message = f"too many requests ({exc.description}); try again in {retry_after} s"
    else:
        message = exc.description or exc.name or "error"
    if exc.response is None:
        # Allow on 405, WWW-Authenticate and the like: the headers werkzeug would send.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                headers.setdefault(name, value)
    return error_body(code, message), status, headers


def register(api: Api) -> None:
    """The API's error handlers; they also appear as documented responses in swagger.json."""

    @api.errorhandler(HTTPException)
    @api.response(400, "Any HTTP error (404, 405, 413, 429, ...)", error_model)
    def _http_error(exc: HTTPException) -> tuple[Body, int, dict[str, str]]:
        """An HTTP error: the status says which, the body is the error model."""
        return http_error(exc)

    @api.errorhandler(ServiceError)
    @api.response(400, "A request the service refuses", error_model)
    def _service_error(exc: ServiceError) -> tuple[Body, int, dict[str, str]]:
        """A request the service refuses: bad input, not found, conflict, not a video."""
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return {**error_body(exc.code, exc.message), **exc.details}, exc.status, headers

    @api.errorhandler(JWTExtendedException)
    @api.response(401, "A missing or unusable token", error_model)
    def _jwt_error(exc: JWTExtendedException) -> tuple[Body, int]:
        """A missing, malformed, revoked or wrong-type token."""
        return error_body("unauthorized", str(exc) or "invalid token"), 401

    @api.errorhandler(PyJWTError)
    @api.response(401, "A token that does not decode", error_model)
    def _token_error(exc: PyJWTError) -> tuple[Body, int]:
        """A token that does not decode: bad signature, expired, malformed."""
        message = "token has expired" if isinstance(exc, ExpiredSignatureError) else "invalid token"
        return error_body("unauthorized", message), 401

    @api.errorhandler
    def _unexpected_error(exc: Exception) -> tuple[Body, int]:
        """Anything else is the server's fault (a 500); the log has the traceback."""
        return error_body("internal_server_error", "the server failed to answer this request"), 500


def json_response(body: Body, status: int, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def redirect_response(exc: RequestRedirect) -> Response:
    """A trailing-slash redirect as JSON: the error model, and the new URL in ``Location``."""
    body = error_body("permanent_redirect", f"this resource is at {exc.new_url}")
    return json_response(body, exc.code, {"Location": exc.new_url})


def init_app(app: Flask) -> None:
    """JSON errors for everything outside the API's resources (/healthz, /nope, /api/nope)."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return json_response(*http_error(exc))
