"""/api/jobs: upload a video, follow the job, read its detections, cancel, delete."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, g, request, url_for
from flask_jwt_extended import current_user, jwt_required
from flask_restx import Namespace, Resource, fields, inputs, reqparse
from sqlalchemy import Row
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import ClientDisconnected

from detector.models import Job
from detector.services import jobs as job_service
from detector.services.errors import InvalidInput

ns = Namespace(
    "jobs",
    description="Detection jobs. Every endpoint needs a Bearer access token; "
    "another user's job answers 404 like a job that does not exist.",
    decorators=[jwt_required()],
)


class _Nullable(fields.Raw):
    """A field that may be null: Swagger 2.0 has no `nullable`, so it says `x-nullable`."""

    def schema(self) -> dict[str, Any]:
        return {**super().schema(), "x-nullable": True}


class NullableString(_Nullable, fields.String):
    pass


class NullableInteger(_Nullable, fields.Integer):
    pass


class NullableDateTime(_Nullable, fields.DateTime):
    pass


progress_model = ns.model(
    "Progress",
    {
        "frames_done": fields.Integer,
        "frames_total": NullableInteger(description="null until planned"),
        "percent": fields.Float,
    },
)
video_model = ns.model(
    "Video",
    {
        "codec": fields.String,
        "width": fields.Integer,
        "height": fields.Integer,
        "fps": fields.Float,
        "frame_count": fields.Integer,
        "duration": fields.Float,
        "rotation": fields.Integer(
            description="Display rotation in degrees from the container; "
            "boxes are in the stored (unrotated) frame."
        ),
    },
)
job_model = ns.model(
    "Job",
    {
        "id": fields.String,
        "status": fields.String(enum=["queued", "processing", "succeeded", "failed", "cancelled"]),
        "filename": fields.String,
        "score_threshold": fields.Float,
        "model": NullableString,
        "progress": fields.Nested(progress_model),
        "video": fields.Nested(video_model),
        "objects_total": NullableInteger(description="null until the job has succeeded"),
        "error": NullableString(description="why the job failed; null unless it failed"),
        "created_at": fields.DateTime,
        "started_at": NullableDateTime,
        "finished_at": NullableDateTime,
        "detections_url": fields.String,
    },
)
job_page_model = ns.model(
    "JobPage",
    {
        "jobs": fields.List(fields.Nested(job_model)),
        "page": fields.Integer,
        "per_page": fields.Integer,
        "total": fields.Integer,
    },
)
object_model = ns.model(
    "DetectedObject",
    {
        "label": fields.String(example="person"),
        "class_id": fields.Integer(example=1),
        "score": fields.Float(example=0.97),
        "box": fields.List(
            fields.Float,
            description="[x1, y1, x2, y2] in pixels of the original frame",
            example=[12.5, 40.0, 118.0, 230.25],
        ),
    },
)
frame_model = ns.model(
    "Frame",
    {
        "frame": fields.Integer(description="0-based frame index, presentation order"),
        "timestamp": fields.Float(description="seconds since the first frame"),
        "objects": fields.List(fields.Nested(object_model)),
    },
)
detections_model = ns.model(
    "DetectionsPage",
    {
        "job_id": fields.String,
        "frames_total": fields.Integer,
        "start": fields.Integer,
        "limit": fields.Integer,
        "next_start": NullableInteger(description="start of the next page; null on the last page"),
        "frames": fields.List(fields.Nested(frame_model)),
    },
)
error_model = ns.model("Error", {"message": fields.String, "error": fields.String})
CUT_OFF = "the upload was cut off: the request body ended before the video file did"
UNAUTHORIZED = "Missing, malformed, expired or revoked access token"

upload_parser = reqparse.RequestParser()
upload_parser.add_argument("video", location="files", type=FileStorage, required=True, help="the video file")
upload_parser.add_argument(
    "score_threshold",
    location="form",
    type=float,
    required=False,
    help="keep objects scoring at least this (0..1)",
)

# Bounded, so that a huge page or start is a 400, never an integer overflow in the database.
MAX_PAGE = 1_000_000
MAX_FRAME_INDEX = 2**31 - 1

list_parser = reqparse.RequestParser()
list_parser.add_argument("page", type=inputs.int_range(1, MAX_PAGE), default=1, location="args")
list_parser.add_argument("per_page", type=inputs.int_range(1, 100), default=20, location="args")

detections_parser = reqparse.RequestParser()
detections_parser.add_argument(
    "start",
    type=inputs.int_range(0, MAX_FRAME_INDEX),
    default=0,
    location="args",
    help="first frame index of the page",
)
detections_parser.add_argument(
    "limit", type=inputs.int_range(1, 1000), default=100, location="args", help="frames per page (1..1000)"
)


def job_dict(job: Job | Row[Any], done: int | None = None) -> dict[str, Any]:
    """The job (an object or a row) as the API shows it; ``done`` is its frames done, when known."""
    if done is None:
        done = job_service.frames_done([job])[job.id]
    total = job.frames_total
    return {
        "id": job.id,
        "status": job.status.value,
        "filename": job.original_filename,
        "score_threshold": job.score_threshold,
        "model": job.model_name,
        "progress": {
            "frames_done": done,
            "frames_total": total,
            "percent": round(100.0 * done / total, 1) if total else 0.0,
        },
        "video": {
            "codec": job.codec,
            "width": job.width,
            "height": job.height,
            "fps": job.fps,
            "frame_count": job.frame_count,
            "duration": job.duration,
            "rotation": job.rotation,
        },
        "objects_total": job.objects_total,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "detections_url": url_for("api.jobs_detections", job_id=job.id),
    }


def _parse(parser: reqparse.RequestParser) -> dict[str, Any]:
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
    @ns.doc(security="Bearer")
    @ns.expect(list_parser)
    @ns.response(200, "The caller's jobs, newest first", job_page_model)
    @ns.response(400, "A bad page or per_page", error_model)
    def get(self) -> dict[str, Any]:
        """List your jobs, newest first."""
        args = _parse(list_parser)
        page = max(1, args["page"])
        jobs, total = job_service.list_jobs(current_user.id, page, args["per_page"])
        done = job_service.frames_done(jobs)
        return {
            "jobs": [job_dict(j, done[j.id]) for j in jobs],
            "page": page,
            "per_page": args["per_page"],
            "total": total,
        }

    @ns.doc(security="Bearer")
    @ns.expect(upload_parser)
    @ns.response(202, "Accepted; poll the job at the Location header", job_model)
    @ns.response(400, "Missing video or bad score_threshold", error_model)
    @ns.response(413, "Larger than the upload limit", error_model)
    @ns.response(415, "Not a video", error_model)
    @ns.response(422, "A video that cannot be decoded or is too large", error_model)
    def post(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Upload a video (multipart field `video`) and start detecting objects in it."""
        config = current_app.config
        try:
            form, files = request.form, request.files
        except ClientDisconnected:
            raise InvalidInput(CUT_OFF) from None
        threshold = job_service.parse_score_threshold(
            form.get("score_threshold"), config["DEFAULT_SCORE_THRESHOLD"]
        )
        upload = files.get("video")
        if upload is None:
            if g.get("uploads") and not files:
                # A file part was started but the form never ended (the server
                # terminated a short body): the parser dropped the partial file.
                raise InvalidInput(CUT_OFF)
            raise InvalidInput("multipart field 'video' with the video file is required")
        job = job_service.create_job(
            owner_id=current_user.id,
            upload=upload.stream,
            filename=upload.filename or "video",
            score_threshold=threshold,
            storage=current_app.extensions["video_storage"],
            max_pixels=int(config["MAX_FRAME_PIXELS"]),
            model_name=_configured_model(),
        )
        body = job_dict(job)
        return body, 202, {"Location": url_for("api.jobs_job", job_id=job.id)}


def _configured_model() -> str:
    config = current_app.config
    return f"{config['DETECTOR_BACKEND']}/{config.get('DETECTOR_MODEL') or 'default'}"


@ns.route("/<string:job_id>", endpoint="jobs_job")
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobResource(Resource):
    @ns.doc(security="Bearer")
    @ns.response(200, "The job", job_model)
    def get(self, job_id: str) -> dict[str, Any]:
        """Status, progress, video metadata, error and times of one job."""
        return job_dict(*job_service.get_job_with_progress(current_user.id, job_id))

    @ns.doc(security="Bearer")
    @ns.response(204, "Deleted, with its video and detections")
    def delete(self, job_id: str) -> tuple[str, int]:
        """Delete a job, its stored video and its detections (a running job is cancelled)."""
        job_service.delete_job(current_user.id, job_id, current_app.extensions["video_storage"])
        return "", 204


@ns.route("/<string:job_id>/cancel")
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobCancel(Resource):
    @ns.doc(security="Bearer")
    @ns.response(200, "Cancelled", job_model)
    @ns.response(409, "The job has already finished", error_model)
    def post(self, job_id: str) -> dict[str, Any]:
        """Stop a queued or processing job; its pending chunks are revoked."""
        return job_dict(job_service.cancel_job(current_user.id, job_id))


@ns.route("/<string:job_id>/detections", endpoint="jobs_detections")
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobDetections(Resource):
    @ns.doc(security="Bearer")
    @ns.expect(detections_parser)
    @ns.response(200, "One page of frames, in order", detections_model)
    @ns.response(400, "A bad start or limit", error_model)
    @ns.response(409, "The job has not succeeded (yet)", error_model)
    def get(self, job_id: str) -> Response:
        """Per-frame detections, paged by frame index: follow `next_start`."""
        args = _parse(detections_parser)
        start, limit = args["start"], args["limit"]
        job, frames = job_service.get_detections(current_user.id, job_id, start, limit)
        total = job.frames_total or 0
        last = frames[-1].frame if frames else None
        page = {
            "job_id": job.id,
            "frames_total": total,
            "start": start,
            "limit": limit,
            "next_start": last + 1 if last is not None and last + 1 < total else None,
        }
        return current_app.response_class(detections_json(page, frames), mimetype="application/json")


def detections_json(page: dict[str, Any], frames: list[job_service.FrameRow]) -> str:
    """The page as JSON text, the frames' stored objects spliced in as they are.

    Parsing every stored box only to encode it again was most of this endpoint's
    cost; the stored text is JSON written by the workers, so it goes out unchanged.
    """
    head = json.dumps(page)
    # A finite float's repr is its JSON text (json.dumps writes the same); timestamps are finite.
    frames_json = ", ".join(
        f'{{"frame": {f.frame}, "timestamp": {f.timestamp!r}, "objects": {f.objects_json}}}' for f in frames
    )
    return f'{head[:-1]}, "frames": [{frames_json}]}}\n'
