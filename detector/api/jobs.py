"""/api/jobs: upload a video, follow the job, read its detections, cancel, delete.

The request handlers. The document's models and parsers are in
detector.api.job_schema, the job's JSON in detector.api.job_views; the names other
modules import from here are re-exported (``__all__``).
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request, url_for
from flask_restx import Namespace, Resource, reqparse
from werkzeug.exceptions import ClientDisconnected

from detector.api.authn import SECURITY, authenticated, current_user
from detector.api.errors import error_model
from detector.api.idempotency import HEADER_DOC, idempotent
from detector.api.job_schema import (
    JOB_ID,
    JOB_ID_PARAM,
    LOCATION,
    MAX_FRAME_INDEX,
    MODELS,
    UNAUTHORIZED,
    UPLOAD_EXCLUSIONS,
    ModelName,
    detections_model,
    detections_parser,
    job_model,
    job_page_model,
    list_parser,
    render_model,
    upload_parser,
)
from detector.api.job_views import job_dict, options_dict, render_dict, stage
from detector.api.webhooks import create_url_job, submitted_urls
from detector.config import current_settings
from detector.services import jobs as job_service
from detector.services import models, options
from detector.services.errors import InvalidInput

__all__ = [
    "JOB_ID",
    "JOB_ID_PARAM",
    "MAX_FRAME_INDEX",
    "UNAUTHORIZED",
    "ModelName",
    "job_dict",
    "ns",
    "options_dict",
    "parse_args",
    "render_dict",
    "render_model",
    "stage",
]

ns = Namespace(
    "jobs",
    description="Detection jobs. Every endpoint needs a Bearer access token or an API key; "
    "another user's job answers 404 like a job that does not exist.",
    decorators=[authenticated()],
)
for schema_model in MODELS:
    ns.add_model(schema_model.name, schema_model)
ns.add_model(error_model.name, error_model)
CUT_OFF = "the upload was cut off: the request body ended before the video file did"


def parse_args(parser: reqparse.RequestParser) -> dict[str, Any]:
    try:
        return dict(parser.parse_args())
    except Exception as exc:  # reqparse aborts with a 400 HTTPException
        if getattr(exc, "code", None) == 400:
            errors = getattr(exc, "data", {}).get("errors", {})
            raise InvalidInput("; ".join(f"{k}: {v}" for k, v in errors.items()) or "bad request") from None
        raise


@ns.route("")
@ns.response(401, UNAUTHORIZED, error_model)
class JobList(Resource):
    @ns.doc(id="list_jobs", security=SECURITY)
    @ns.expect(list_parser)
    @ns.response(200, "The caller's jobs, newest first", job_page_model)
    @ns.response(400, "A bad page or per_page", error_model)
    def get(self) -> dict[str, Any]:
        """List your jobs, newest first."""
        args = parse_args(list_parser)
        page = max(1, args["page"])
        jobs, total = job_service.list_jobs(current_user.id, page, args["per_page"])
        done = job_service.frames_done(jobs)
        return {
            "jobs": [job_dict(j, done[j.id]) for j in jobs],
            "page": page,
            "per_page": args["per_page"],
            "total": total,
        }

    @ns.doc(id="create_job", security=SECURITY, params=HEADER_DOC, vendor=UPLOAD_EXCLUSIONS)
    @ns.expect(upload_parser)
    @ns.response(202, "Accepted; poll the job at the Location header", job_model, headers=LOCATION)
    @ns.response(
        200, "The job an earlier request with this Idempotency-Key made", job_model, headers=LOCATION
    )
    @ns.response(
        400,
        "Missing video, a bad option (the message names the field), a span with no frame, "
        "or a cut-off upload",
        error_model,
    )
    @ns.response(
        413,
        "Larger than the upload limit (MAX_UPLOAD_MB; the message states the limit), or a video that "
        "would take you past your storage quota (STORAGE_QUOTA_MB, quota_exceeded: the message "
        "states the quota, your use and the video's size; a source_url is refused when you are "
        "at or over it)",
        error_model,
    )
    @ns.response(415, "Not a video", error_model)
    @ns.response(
        422,
        "A video that cannot be decoded or is too large, or an Idempotency-Key reused "
        "with other parameters (idempotency_key_reused)",
        error_model,
    )
    @ns.response(503, "The deployment's model settings cannot be used here", error_model)
    def post(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Upload a video (multipart field `video`) and start detecting objects in it.

        Answers 202 with the job, queued; its URL is in the Location header.
        """
        settings = current_settings()
        try:
            form, files = request.form, request.files
        except ClientDisconnected:
            raise InvalidInput(CUT_OFF) from None
        model = models.choose(form.get("model"))
        threshold = job_service.parse_score_threshold(
            form.get("score_threshold"),
            default=settings.default_score_threshold,
            floor=models.catalog().settings(model).min_score,
        )
        job_options = options.parse_job_options(form, job_service.configured_labels(model), model)
        upload = files.get("video")
        urls = submitted_urls(form, has_video=upload is not None)  # callback_url, source_url
        if urls.source_url is not None:
            url_job, replayed = create_url_job(
                urls, threshold, job_service.configured_model(model), job_options
            )
            location = {"Location": url_for("api.jobs_job", job_id=url_job.id), **urls.headers()}
            return job_dict(url_job), 200 if replayed else 202, location
        if upload is None:
            if g.get("uploads") and not files:
                # A file part was started but the form never ended (the server
                # terminated a short body): the parser dropped the partial file.
                raise InvalidInput(CUT_OFF)
            raise InvalidInput("multipart field 'video' with the video file (or a 'source_url') is required")
        storage = current_app.extensions["video_storage"]
        job, replayed = idempotent(
            current_user.id,
            lambda attach: job_service.create_job(
                owner_id=current_user.id,
                upload=upload.stream,
                filename=upload.filename or "video",
                score_threshold=threshold,
                storage=storage,
                max_pixels=settings.max_frame_pixels,
                model_name=job_service.configured_model(model),
                attach=attach,
                callback_url=urls.callback_url,
                options=job_options,
            ),
            discard=lambda: storage.discard_upload(upload.stream),
        )
        body = job_dict(job)
        headers = {"Location": url_for("api.jobs_job", job_id=job.id), **urls.headers()}
        return body, 200 if replayed else 202, headers


@ns.route("/<string:job_id>", endpoint="jobs_job")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobResource(Resource):
    @ns.doc(id="get_job", security=SECURITY)
    @ns.response(200, "The job", job_model)
    def get(self, job_id: str) -> dict[str, Any]:
        """Status, progress, video metadata, error and times of one job."""
        return job_dict(*job_service.get_job_with_progress(current_user.id, job_id))

    @ns.doc(id="delete_job", security=SECURITY)
    @ns.response(204, "Deleted, with its video and detections (their bytes leave your storage use)")
    def delete(self, job_id: str) -> tuple[str, int]:
        """Delete a job, its stored video and its detections (a running job is cancelled)."""
        job_service.delete_job(current_user.id, job_id, current_app.extensions["video_storage"])
        return "", 204


@ns.route("/<string:job_id>/cancel")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobCancel(Resource):
    @ns.doc(id="cancel_job", security=SECURITY)
    @ns.response(200, "Cancelled", job_model)
    @ns.response(409, "The job had already ended: error job_ended, its final state in status", error_model)
    def post(self, job_id: str) -> dict[str, Any]:
        """Stop a queued or processing job; its pending chunks are revoked."""
        return job_dict(job_service.cancel_job(current_user.id, job_id))


@ns.route("/<string:job_id>/detections", endpoint="jobs_detections")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobDetections(Resource):
    @ns.doc(id="list_detections", security=SECURITY)
    @ns.expect(detections_parser)
    @ns.response(200, "One page of frames, in order", detections_model)
    @ns.response(400, "A bad start or limit", error_model)
    @ns.response(409, "The job has not succeeded (yet)", error_model)
    def get(self, job_id: str) -> Response:
        """Per-frame detections, paged by frame index: follow `next_start`.

        Answers 409 until the job has succeeded.
        """
        args = parse_args(detections_parser)
        start, limit = args["start"], args["limit"]
        text = job_service.detections_page(current_user.id, job_id, start, limit)
        return current_app.response_class(text, mimetype="application/json")
