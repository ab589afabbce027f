"""The application factory: settings, database, JWT, API, video storage and Celery;
the client address behind trusted proxies, and the security headers of every answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from flask import Flask, Request, Response, current_app, g
from flask.sessions import SessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import RequestRedirect

from detector.api.extensions import db, jwt, limiter
from detector.auth.ratelimit import storage_uri
from detector.config import Settings, load_config
from detector.storage import build_storage


class UploadRequest(Request):
    """Writes uploaded files straight into video storage's incoming area.

    The upload is streamed to disk once, where it will be kept; files of a
    refused or cut-off request are removed when the request ends.
    """

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        upload = current_app.extensions["video_storage"].new_upload()
        g.setdefault("uploads", []).append(upload)
        return upload


class NoSessions(SessionInterface):
    """No cookie sessions: the API authenticates each request by its Bearer token.

    Flask's default interface builds a signing serializer and looks for a cookie
    on every request; here ``session`` is Flask's null session, which refuses writes.
    """

    def open_session(self, app: Flask, request: Request) -> None:
        return None

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


# Sent with every answer (API, media, metrics, the web app), unless a view set its own:
# no content sniffing, no framing by other sites, no Referer (which would carry a
# media token's URL to another site). The web app adds its Content-Security-Policy.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class DetectorFlask(Flask):
    """Flask, with trailing-slash redirects answered in JSON.

    Flask sends routing redirects (``/api`` to ``/api/``) as werkzeug's HTML
    page and never passes them to error handlers; here they get the service's
    error model, with the new URL in ``Location``.
    """

    def handle_http_exception(self, e: HTTPException) -> HTTPException | Any:
        if isinstance(e, RequestRedirect):
            from detector.api.errors import redirect_response

            response: Response = redirect_response(e)
            return response
        return super().handle_http_exception(e)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app. ``test_config`` overrides settings (tests use it)."""
    app = DetectorFlask(__name__)
    app.config.from_mapping(load_config(test_config))
    app.extensions["settings"] = settings = Settings.from_config(app.config)
    app.request_class = UploadRequest
    if settings.trusted_proxies > 0:
        # The client's address (what the rate limits count by) and scheme are those the
        # proxies pass on, read from the last TRUSTED_PROXIES entries only: a client
        # cannot forge them with headers of its own.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    app.session_interface = NoSessions()
    app.config.update(
        JWT_TOKEN_LOCATION=["headers"],
        # CSRF is a cookie matter: tokens travel in headers here, so they carry no csrf claim.
        JWT_COOKIE_CSRF_PROTECT=False,
        RATELIMIT_ENABLED=app.config.get("RATELIMIT_ENABLED", True),
        RATELIMIT_STORAGE_URI=storage_uri(settings),
        RESTX_MASK_SWAGGER=False,
        RESTX_ERROR_404_HELP=False,
    )
    _configure_logging(app)

    db.init_app(app)
    jwt.init_app(app)
    limiter.init_app(app)
    # Only login is limited, and its decorator checks its own limit. The
    # app-wide check that init_app adds would run on every request and find
    # nothing to limit (a tenth of an authenticated GET's time).
    app.before_request_funcs[None] = [
        hook
        for hook in app.before_request_funcs.get(None, [])
        if getattr(hook, "__self__", None) is not limiter
    ]
    from detector.auth.tokens import init_jwt

    init_jwt(jwt)
    app.extensions["video_storage"] = build_storage(settings.video_storage)

    from detector.pipeline.celery_app import celery_init_app

    celery_init_app(app)

    from detector.api import init_app as init_api

    init_api(app)
    from detector.web import init_app as init_web

    init_web(app)  # the web app at /
    from detector.observability.http import init_app as init_metrics

    init_metrics(app)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.teardown_request
    def _discard_unkept_uploads(_exc: BaseException | None) -> None:
        storage = app.extensions["video_storage"]
        for upload in g.pop("uploads", []):
            storage.discard_upload(upload)

    return app


def _configure_logging(app: Flask) -> None:
    from detector.observability.logs import configure_logging

    settings = app.extensions["settings"]
    configure_logging(settings.log_level, settings.log_format)
