"""The REST API: one flask-restx Api under /api, one namespace per resource.

Swagger UI is served at /api/ and the OpenAPI document at /api/swagger.json.
Every route of the service is registered here, and every error of the
service is JSON in one model (see `detector.api.errors`).
"""

from __future__ import annotations

from flask import Blueprint, Flask
from flask_restx import Api

from detector import __version__

AUTHORIZATIONS = {
    "Bearer": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "Type: Bearer <access token from /api/auth/login> (or Bearer <API key>)",
    },
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A personal API key from POST /api/keys (dk_live_...)",
    },
}

DESCRIPTION = (
    "Batch video object detection. Upload a video, poll the job, page through the "
    "objects found in every frame. Boxes are [x1, y1, x2, y2] in pixels of the "
    "original (stored) frame, origin top-left; frames are numbered from 0 in "
    "presentation order; timestamps are seconds since the first frame."
)


def init_app(app: Flask) -> Api:
    """Register the API blueprint (a fresh Api per app, so tests can build many apps)."""
    from detector.api import (
        analytics,
        auth,
        errors,
        health,
        jobs,
        keys,
        media,
        models,
        results,
        search,
        webhooks,
    )

    blueprint = Blueprint("api", __name__, url_prefix="/api")
    api = Api(
        blueprint,
        title="detector",
        version=__version__,
        description=DESCRIPTION,
        doc="/",
        authorizations=AUTHORIZATIONS,
    )
    api.add_namespace(auth.ns, path="/auth")
    api.add_namespace(jobs.ns, path="/jobs")
    api.add_namespace(keys.ns, path="/keys")
    # /auth/webhook-secret and /jobs/<id>/webhook.
    api.add_namespace(webhooks.secret_ns, path="/auth")
    api.add_namespace(webhooks.ns, path="/jobs")
    # /jobs/<id>/tracks, /jobs/<id>/export and /labels.
    api.add_namespace(results.ns, path="/jobs")
    api.add_namespace(results.labels_ns, path="/labels")
    api.add_namespace(models.ns, path="/models")
    # /jobs/<id>/render, /jobs/<id>/media-token, /jobs/<id>/video[/annotated].
    api.add_namespace(media.ns, path="/jobs")
    # /jobs/<id>/analytics[/<aid>[/heatmap|/export]].
    api.add_namespace(analytics.ns, path="/jobs")
    # /search (moments across the caller's jobs) and /jobs/<id>/tracks/<track_id>/thumbnail.
    api.add_namespace(search.ns, path="/search")
    api.add_namespace(search.thumbnails_ns, path="/jobs")
    errors.register(api)
    # A user's first webhook secret is in the answer of the request that made it, even a refusal.
    blueprint.after_request(webhooks.show_new_secret)
    app.register_blueprint(blueprint)
    errors.init_app(app)
    health.init_app(app)
    return api
