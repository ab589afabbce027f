"""The web app: one page at ``/``, served by the API itself, that talks to /api.

The app is hand-written ES modules and CSS in ``static/``, committed exactly as
the browser loads them. There is no Node.js build step and no CDN: nothing
to install or compile before ``make run``, no third-party server a browser
must reach, and what is in the repository is what runs. It needs a current
browser (ES modules, fetch, CSS grid); ``requestVideoFrameCallback`` is used
where the browser has it.

Everything under the blueprint is sent with a strict Content-Security-Policy
(scripts, styles and connections from this origin only, no inline script or
style, no framing) and ``nosniff`` / ``no-referrer``. The Swagger UI at /api/
keeps its own inline scripts, so it is not under this policy.

Signing in uses /api/auth/session: the access token lives in the page's
memory only, the refresh token in an HttpOnly cookie (see detector.api.auth).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, send_from_directory

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Canvas snapshots and downloaded exports are data: and blob: URLs.
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Older browsers that ignore frame-ancestors.
    "X-Frame-Options": "DENY",
}


def blueprint() -> Blueprint:
    """A fresh blueprint per app: the page at / and its files at /app/..."""
    web = Blueprint("web", __name__, static_folder=str(STATIC), static_url_path="/app")

    @web.get("/")
    def index() -> Response:
        response = send_from_directory(STATIC, "index.html")
        # The page is small and names its modules without a version: always revalidate.
        response.headers["Cache-Control"] = "no-cache"
        return response

    @web.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return web


def init_app(app: Flask) -> None:
    """Serve the web app at / (the page) and /app/... (its modules, styles and images)."""
    app.register_blueprint(blueprint())
