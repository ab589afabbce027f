"""A job's videos and its annotated render.

- ``POST /api/jobs/<id>/render``: start the annotated video (idempotent).
- ``POST /api/jobs/<id>/media-token``: URLs a browser's ``<video>`` can play.
- ``GET /api/jobs/<id>/video`` and ``/video/annotated``: the files, with HTTP
  ``Range`` support (206 Partial Content), so players seek without
  downloading everything.

The video endpoints take the usual Bearer token or API key, or a
``media_token`` query parameter (a ``<video>`` cannot send headers).
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request, send_file, url_for
from flask_restx import Namespace, Resource, fields

from detector.api.authn import SECURITY, authenticated, current_user, media_viewer
from detector.api.errors import error_model
from detector.api.jobs import JOB_ID_PARAM, UNAUTHORIZED, render_dict, render_model
from detector.config import current_settings
from detector.services import jobs as job_service
from detector.services import media
from detector.video import ByteSource

ns = Namespace("media", description="A job's original and annotated videos, streamed with Range support")

media_token_model = ns.model(
    "MediaToken",
    {
        "token": fields.String(
            required=True,
            description="The media token itself",
            example="eyJ1IjoxLCJqIjoiNGY2YyJ9.Z2xvYg.c2lnbmF0dXJl",
        ),
        "expires_in": fields.Integer(required=True, description="Seconds it stays good", example=3600),
        "video_url": fields.String(
            required=True,
            description="The original video, token included",
            example="/api/jobs/…/video?media_token=…",
        ),
        "annotated_url": fields.String(
            required=True,
            description="The annotated video, token included (404 until rendered)",
            example="/api/jobs/…/video/annotated?media_token=…",
        ),
    },
)
ns.add_model(error_model.name, error_model)
ns.add_model(render_model.name, render_model)
MEDIA_TOKEN_PARAM = {
    "media_token": {
        "in": "query",
        "type": "string",
        "description": "A media token from POST /api/jobs/<id>/media-token, instead of a Bearer token",
    },
    "Range": {"in": "header", "type": "string", "description": "bytes=START-END, as HTTP defines it"},
}
GONE = (
    "The job's stored videos were deleted at the end of their retention (VIDEO_RETENTION_DAYS; "
    "the job's video.deleted_at); its detections, tracks and exports remain"
)
RANGE_HEADERS = {
    "Accept-Ranges": {"type": "string", "description": "bytes"},
    "Content-Range": {"type": "string", "description": "On 206: the bytes sent, e.g. bytes 0-1023/52428800"},
}


def _send(found: media.MediaFile) -> Response:
    """The video, whole or the byte range asked for: a local file as werkzeug sends
    it, an object-store object streamed from ranged reads of the bucket (not a
    redirect to a presigned URL: the bucket need not be reachable from clients, and
    the answer keeps the media token's checks and these headers)."""
    source = found.source
    if isinstance(source, ByteSource):
        response = send_file(
            source.open(),
            mimetype=found.mimetype,
            conditional=False,
            etag=getattr(source, "etag", False),
            last_modified=getattr(source, "last_modified", None),
            download_name=found.download_name,
            max_age=0,
        )
        response.content_length = source.size
        response.make_conditional(request.environ, accept_ranges=True, complete_length=source.size)
    else:
        response = send_file(
            source,
            mimetype=found.mimetype,
            conditional=True,
            download_name=found.download_name,
            max_age=0,
        )
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@ns.route("/<string:job_id>/render", endpoint="jobs_render")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobRender(Resource):
    method_decorators = [authenticated()]

    @ns.doc(id="render_job", security=SECURITY)
    @ns.response(202, "Rendering started", render_model)
    @ns.response(200, "The render asked for before (queued, rendering or succeeded)", render_model)
    @ns.response(409, "The job has not succeeded", error_model)
    @ns.response(410, GONE, error_model)
    @ns.response(
        503,
        "The message broker did not take the render (it is marked failed); ask again after Retry-After seconds",
        error_model,
        headers={"Retry-After": {"type": "integer", "description": "Seconds to wait before asking again"}},
    )
    def post(self, job_id: str) -> tuple[dict[str, Any], int]:
        """Draw the job's detections into a browser-playable MP4 (H.264); follow it in the job's `render`.

        A second request answers the same render; a failed one is started again.
        """
        job, started = media.request_render(current_user.id, job_id)
        return render_dict(job) or {}, 202 if started else 200


@ns.route("/<string:job_id>/media-token", endpoint="jobs_media_token")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobMediaToken(Resource):
    method_decorators = [authenticated()]

    @ns.doc(id="create_media_token", security=SECURITY)
    @ns.response(200, "URLs that play the job's videos for MEDIA_URL_SECONDS", media_token_model)
    def post(self, job_id: str) -> dict[str, Any]:
        """A short-lived token for this job's videos, for players that cannot send a Bearer token."""
        job = job_service.get_job(current_user.id, job_id)
        token = media.media_token(current_app.config["SECRET_KEY"], current_user.id, job.id)
        return {
            "token": token,
            "expires_in": current_settings().media_url_seconds,
            "video_url": url_for("api.jobs_video", job_id=job.id, media_token=token),
            "annotated_url": url_for("api.jobs_video_annotated", job_id=job.id, media_token=token),
        }


@ns.route("/<string:job_id>/video", endpoint="jobs_video")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, "No credential, or a bad or expired media token", error_model)
@ns.response(404, "No such job (or not yours), or its video is gone", error_model)
class JobVideo(Resource):
    @ns.doc(id="get_video", security=SECURITY, params=MEDIA_TOKEN_PARAM)
    @ns.produces(["video/mp4", "application/octet-stream", "application/json"])
    @ns.response(200, "The whole video, as uploaded", headers=RANGE_HEADERS)
    @ns.response(206, "The bytes the Range asked for", headers=RANGE_HEADERS)
    @ns.response(409, "The video is still being downloaded (a source_url job)", error_model)
    @ns.response(410, GONE, error_model)
    @ns.response(416, "A Range outside the file", error_model)
    def get(self, job_id: str) -> Response:
        """The job's original video, with Range support."""
        user_id = media_viewer(job_id)
        return _send(media.original_video(user_id, job_id, current_app.extensions["video_storage"]))


@ns.route("/<string:job_id>/video/annotated", endpoint="jobs_video_annotated")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, "No credential, or a bad or expired media token", error_model)
@ns.response(404, "No such job (or not yours), or no render was asked for", error_model)
class JobAnnotatedVideo(Resource):
    @ns.doc(id="get_annotated_video", security=SECURITY, params=MEDIA_TOKEN_PARAM)
    @ns.produces(["video/mp4", "application/json"])
    @ns.response(200, "The whole annotated MP4", headers=RANGE_HEADERS)
    @ns.response(206, "The bytes the Range asked for", headers=RANGE_HEADERS)
    @ns.response(409, "The render has not finished, or it failed (the message says why)", error_model)
    @ns.response(410, GONE, error_model)
    @ns.response(416, "A Range outside the file", error_model)
    def get(self, job_id: str) -> Response:
        """The job's annotated video (H.264 MP4, index first), with Range support."""
        user_id = media_viewer(job_id)
        return _send(media.annotated_video(user_id, job_id, current_app.extensions["video_storage"]))
