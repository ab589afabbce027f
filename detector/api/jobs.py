"""/api/jobs: upload a video, follow the job, read its detections, cancel, delete."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request, url_for
from flask_restx import Namespace, Resource, fields, inputs, reqparse
from sqlalchemy import Row
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import ClientDisconnected

from detector.api.authn import SECURITY, authenticated, current_user
from detector.api.errors import error_model
from detector.api.fields import (
    NullableDateTime,
    NullableFloat,
    NullableInteger,
    NullableList,
    NullableNested,
    NullableString,
)
from detector.api.idempotency import HEADER_DOC, idempotent
from detector.api.webhooks import create_url_job, submitted_urls
from detector.config import current_settings
from detector.models import Job, JobStatus, RenderStatus
from detector.pipeline import admission
from detector.pipeline.results import detections_page_json
from detector.services import jobs as job_service
from detector.services import models, options
from detector.services.errors import InvalidInput

ns = Namespace(
    "jobs",
    description="Detection jobs. Every endpoint needs a Bearer access token or an API key; "
    "another user's job answers 404 like a job that does not exist.",
    decorators=[authenticated()],
)


JOB_ID = "4f6c0b1d9a6e4d0e8f5a2b7c3d9e1f20"
STATUSES = ["downloading", "queued", "processing", "succeeded", "failed", "cancelled"]
STAGES = ["downloading", "queued", "planning", "detecting", "merging", "tracking", "finished"]

progress_model = ns.model(
    "Progress",
    {
        "frames_done": fields.Integer(
            required=True, min=0, description="Frames detected so far", example=240
        ),
        "frames_total": NullableInteger(
            required=True,
            min=0,
            description="Frames of the video; null until the video has been indexed",
            example=750,
        ),
        "percent": fields.Float(
            required=True,
            min=0,
            max=100,
            description="frames_done as a percentage of frames_total (0 while unknown)",
            example=32.0,
        ),
        "stage": fields.String(
            required=True,
            enum=STAGES,
            description="What the job is doing: downloading, queued, planning, detecting, "
            "merging (checking every chunk is stored), tracking (a job with track=true), finished",
            example="detecting",
        ),
        "frames_tracked": NullableInteger(
            required=True,
            min=0,
            description="A tracked job: frames tracked so far, once tracking has started; else null",
            example=250,
        ),
    },
)
options_model = ns.model(
    "JobOptions",
    {
        "sample_fps": NullableFloat(
            required=True,
            description="At most this many frames a second are analysed; null when not sampled by rate",
            example=2.0,
        ),
        "frame_stride": NullableInteger(
            required=True,
            description="Every frame_stride-th frame is analysed; null when not sampled by stride",
            example=5,
        ),
        "start": NullableFloat(
            required=True, description="Analysis starts at this second; null for the start", example=10.0
        ),
        "end": NullableFloat(
            required=True,
            description="Analysis ends before this second; null for the end of the video",
            example=40.0,
        ),
        "classes": NullableList(
            fields.String,
            required=True,
            description="Only these labels are kept; null for every class",
            example=["person", "car"],
        ),
        "track": fields.Boolean(
            required=True, description="Whether objects carry track ids across frames", example=True
        ),
        "model": fields.String(
            required=True,
            description="The name of the model the job chose (GET /api/models)",
            example="default",
        ),
    },
)
video_model = ns.model(
    "Video",
    {
        "codec": fields.String(required=True, description="Video codec of the stream", example="h264"),
        "width": fields.Integer(required=True, description="Stored frame width in pixels", example=1920),
        "height": fields.Integer(required=True, description="Stored frame height in pixels", example=1080),
        "fps": fields.Float(required=True, description="Average frames per second", example=25.0),
        "frame_count": fields.Integer(
            required=True,
            description="Frames: the header's count at upload, the exact count once indexed",
            example=750,
        ),
        "duration": fields.Float(required=True, description="Length in seconds", example=30.0),
        "rotation": fields.Integer(
            required=True,
            description="Display rotation in degrees from the container; "
            "boxes are in the stored (unrotated) frame.",
            example=0,
        ),
        "expires_at": NullableDateTime(
            required=True,
            description="When the stored video and its annotated video will be deleted "
            "(VIDEO_RETENTION_DAYS after the job ended; ISO 8601, UTC); null: kept for as long "
            "as the job (no retention, or the job has not finished)",
            example="2026-12-22T18:24:31.902114+00:00",
        ),
        "deleted_at": NullableDateTime(
            required=True,
            description="When they were deleted (ISO 8601, UTC); from then on the video endpoints "
            "and render answer 410. Detections, tracks and exports stay. Null until then.",
            example="2026-12-22T18:25:00.120417+00:00",
        ),
    },
)
render_model = ns.model(
    "Render",
    {
        "status": fields.String(
            required=True,
            enum=["queued", "rendering", "succeeded", "failed"],
            description="queued, then rendering, then succeeded or failed",
            example="rendering",
        ),
        "frames_done": fields.Integer(required=True, min=0, description="Frames drawn so far", example=120),
        "percent": fields.Float(
            required=True, min=0, max=100, description="Frames drawn, of the video's frames", example=40.0
        ),
        "error": NullableString(
            required=True,
            description="Why the render failed; null unless it failed",
            example="the annotated video could not be made: the video ended early",
        ),
        "url": NullableString(
            required=True,
            description="The annotated MP4 once succeeded (GET, Range supported); null before, "
            "and once the job's videos were deleted (video.deleted_at)",
            example=f"/api/jobs/{JOB_ID}/video/annotated",
        ),
    },
)
job_model = ns.model(
    "Job",
    {
        "id": fields.String(required=True, description="The job's id", example=JOB_ID),
        "status": fields.String(
            required=True,
            enum=STATUSES,
            description="queued, then processing, then succeeded, failed or cancelled",
            example="processing",
        ),
        "filename": fields.String(
            required=True, description="The uploaded file's name (metadata only)", example="street.mp4"
        ),
        "score_threshold": fields.Float(
            required=True, description="Objects scoring below this are left out", example=0.5
        ),
        "model": NullableString(
            required=True,
            description="Exactly which model and weights the job's detections come from: "
            "backend/model@weights (a checksum for a weights file); options.model is its name",
            example="torchvision/fasterrcnn_mobilenet_v3_large_fpn@fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
        ),
        "queue_position": NullableInteger(
            required=True,
            description="A queued job waiting for one of its owner's processing slots "
            "(MAX_PROCESSING_JOBS_PER_USER): its place in its owner's line, 1 next; else null",
            example=2,
        ),
        "waiting": NullableString(
            required=True,
            description="What a queued job is waiting for, in words; null when it is not held back",
            example="waiting for one of your 2 processing jobs to end",
        ),
        "progress": fields.Nested(progress_model, required=True, description="How far detection has got"),
        "options": fields.Nested(options_model, required=True, description="What the job analyses"),
        "tracks_total": NullableInteger(
            required=True,
            description="A tracked job: the tracks found, once it has succeeded; else null",
            example=42,
        ),
        "video": fields.Nested(video_model, required=True, description="What the upload's probe found"),
        "objects_total": NullableInteger(
            required=True,
            description="Objects found in all frames; null until the job has succeeded",
            example=1834,
        ),
        "error": NullableString(
            required=True,
            description="Why the job failed; null unless it failed",
            example="chunk 3 (frames 300-399) failed: CUDA out of memory",
        ),
        "created_at": fields.DateTime(
            required=True,
            description="When the job was created (ISO 8601, UTC)",
            example="2026-11-22T18:23:47.550789+00:00",
        ),
        "started_at": NullableDateTime(
            required=True,
            description="When processing started; null while queued",
            example="2026-11-22T18:23:47.643499+00:00",
        ),
        "finished_at": NullableDateTime(
            required=True,
            description="When the job finished; null until then",
            example="2026-11-22T18:24:31.902114+00:00",
        ),
        "bytes_downloaded": NullableInteger(
            required=True,
            description="A source_url job: bytes of the video downloaded so far; null for an upload",
            example=1048576,
        ),
        "bytes_total": NullableInteger(
            required=True,
            description="A source_url job: the video's size, once the server has said it",
            example=5242880,
        ),
        "source_url": NullableString(
            required=True,
            description="Where the video was downloaded from; null for an upload",
            example="https://example.com/street.mp4",
        ),
        "callback_url": NullableString(
            required=True,
            description="Where the job's completion event is POSTed; null for none",
            example="https://example.com/hooks/detector",
        ),
        "detections_url": fields.String(
            required=True,
            description="Where to read the detections once the job has succeeded",
            example=f"/api/jobs/{JOB_ID}/detections",
        ),
        "tracks_url": fields.String(
            required=True,
            description="Where to read a tracked job's tracks once it has succeeded",
            example=f"/api/jobs/{JOB_ID}/tracks",
        ),
        "render": NullableNested(
            render_model,
            required=True,
            description="The annotated video (POST /api/jobs/<id>/render); null until one is asked for",
        ),
    },
)
job_page_model = ns.model(
    "JobPage",
    {
        "jobs": fields.List(
            fields.Nested(job_model), required=True, description="This page's jobs, newest first"
        ),
        "page": fields.Integer(required=True, min=1, description="This page's number, from 1", example=1),
        "per_page": fields.Integer(required=True, min=1, max=100, description="Jobs per page", example=20),
        "total": fields.Integer(required=True, min=0, description="All of the caller's jobs", example=3),
    },
)
object_model = ns.model(
    "DetectedObject",
    {
        "label": fields.String(required=True, description="The object's class name", example="person"),
        "class_id": fields.Integer(required=True, description="The model's class id (COCO)", example=1),
        "score": fields.Float(
            required=True, min=0, max=1, description="The model's confidence, in (0, 1]", example=0.97
        ),
        "box": fields.List(
            fields.Float,
            required=True,
            min_items=4,
            max_items=4,
            description="[x1, y1, x2, y2] in pixels of the original frame, origin top-left",
            example=[12.5, 40.0, 118.0, 230.25],
        ),
    },
)
frame_model = ns.model(
    "Frame",
    {
        "frame": fields.Integer(
            required=True, min=0, description="0-based frame index, presentation order", example=0
        ),
        "timestamp": fields.Float(required=True, description="Seconds since the first frame", example=0.0),
        "objects": fields.List(
            fields.Nested(object_model), required=True, description="The objects found in this frame"
        ),
    },
)
detections_model = ns.model(
    "DetectionsPage",
    {
        "job_id": fields.String(required=True, description="The job these frames belong to", example=JOB_ID),
        "frames_total": fields.Integer(
            required=True, min=0, description="Frames of the whole video", example=750
        ),
        "start": fields.Integer(
            required=True, min=0, description="The start this page was asked for", example=0
        ),
        "limit": fields.Integer(
            required=True, min=1, description="The limit this page was asked for", example=100
        ),
        "next_start": NullableInteger(
            required=True,
            description="start of the next page; null on the last page",
            example=100,
        ),
        "frames": fields.List(
            fields.Nested(frame_model), required=True, description="This page's frames, in order"
        ),
    },
)
ns.add_model(error_model.name, error_model)
CUT_OFF = "the upload was cut off: the request body ended before the video file did"
UNAUTHORIZED = "Missing, malformed, expired or revoked access token or API key"
JOB_ID_PARAM = "The job's id, as create_job answered it"
LOCATION = {
    "Location": {"type": "string", "description": "The new job's URL, to poll"},
    "Detector-Webhook-Secret": {
        "type": "string",
        "description": "Only on the caller's first job with a callback_url: the secret that "
        "signs its webhooks, shown this once",
    },
}


class Bounded:
    """A number form field's type in the API document: its bounds, and its default
    (None: leaving the field out turns the option off)."""

    def __init__(
        self,
        kind: type[int] | type[float],
        minimum: float,
        maximum: float,
        default: float | None = None,
        *,
        exclusive_minimum: bool = False,
    ) -> None:
        self.kind, self.minimum, self.maximum, self.default = kind, minimum, maximum, default
        self.exclusive_minimum = exclusive_minimum

    @property
    def __schema__(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "integer" if self.kind is int else "number",
            "minimum": self.minimum,
            "maximum": self.maximum,
        }
        if self.exclusive_minimum:
            schema["exclusiveMinimum"] = True
        if self.default is not None:
            schema["default"] = self.default
        return schema

    def __call__(self, value: str) -> float:
        return self.kind(value)


class ScoreThreshold:
    """The score_threshold form field's type in the API document.

    Its minimum is the app's DETECTOR_MIN_SCORE and its default the app's
    DEFAULT_SCORE_THRESHOLD, read when the document is built (once per app, in
    one of its requests). The upload itself is checked by
    `detector.services.jobs.parse_score_threshold`.
    """

    @property
    def __schema__(self) -> dict[str, Any]:
        settings = current_settings()
        return {
            "type": "number",
            "minimum": settings.detector_min_score,
            "maximum": 1.0,
            "default": settings.default_score_threshold,
        }

    def __call__(self, value: str) -> float:
        return float(value)


upload_parser = reqparse.RequestParser()
upload_parser.add_argument(
    "video",
    location="files",
    type=FileStorage,
    required=False,
    help="The video file (any container FFmpeg reads); exactly one of video and source_url",
)
upload_parser.add_argument(
    "source_url",
    location="form",
    type=str,
    required=False,
    help="An http(s) URL to download the video from, instead of the video file "
    "(the job starts in status downloading)",
)
upload_parser.add_argument(
    "callback_url",
    location="form",
    type=str,
    required=False,
    help="An http(s) URL that gets a signed POST when the job ends (see the docs: webhooks)",
)
upload_parser.add_argument(
    "model",
    location="form",
    type=str,
    required=False,
    help="The name of the model to run (GET /api/models); default: the deployment's default model",
)
upload_parser.add_argument(
    "score_threshold",
    location="form",
    type=ScoreThreshold(),
    required=False,
    help="Keep objects scoring at least this. Its minimum is the model's own floor "
    "(DETECTOR_MIN_SCORE): the model reports nothing below it.",
)

upload_parser.add_argument(
    "sample_fps",
    location="form",
    type=Bounded(float, 0, options.MAX_SAMPLE_FPS, exclusive_minimum=True),
    required=False,
    help=f"Analyse at most this many frames a second (greater than 0, at most {options.MAX_SAMPLE_FPS:g}), "
    "chosen by timestamp so that variable-frame-rate video is sampled evenly. Not with frame_stride.",
)
upload_parser.add_argument(
    "frame_stride",
    location="form",
    type=Bounded(int, 1, options.MAX_FRAME_STRIDE, 1),
    required=False,
    help=f"Analyse every k-th frame (1 to {options.MAX_FRAME_STRIDE}); 1, the default, is every frame. "
    "Not with sample_fps.",
)
upload_parser.add_argument(
    "start",
    location="form",
    type=Bounded(float, 0, options.MAX_SECONDS, 0),
    required=False,
    help="Analyse from this second of the video on (default 0); it must be before the video's end",
)
upload_parser.add_argument(
    "end",
    location="form",
    type=Bounded(float, 0, options.MAX_SECONDS, exclusive_minimum=True),
    required=False,
    help="Analyse only frames before this second (default: the end of the video); after start",
)
upload_parser.add_argument(
    "classes",
    location="form",
    type=str,
    required=False,
    help="Keep only these classes: comma-separated labels or class ids of the model (GET /api/labels), "
    "e.g. person,car. Default: every class.",
)
upload_parser.add_argument(
    "track",
    location="form",
    type=inputs.boolean,
    required=False,
    default=False,
    help="Follow objects across the analysed frames: each object gets a track_id, and the job "
    "gets tracks (GET /api/jobs/<id>/tracks). Default false.",
)

# Bounded, so that a huge page or start is a 400, never an integer overflow in the database.
MAX_PAGE = 1_000_000
MAX_FRAME_INDEX = 2**31 - 1

list_parser = reqparse.RequestParser()
list_parser.add_argument(
    "page", type=inputs.int_range(1, MAX_PAGE), default=1, location="args", help="Page number, from 1"
)
list_parser.add_argument(
    "per_page", type=inputs.int_range(1, 100), default=20, location="args", help="Jobs per page"
)

detections_parser = reqparse.RequestParser()
detections_parser.add_argument(
    "start",
    type=inputs.int_range(0, MAX_FRAME_INDEX),
    default=0,
    location="args",
    help="First frame index of the page (a page's next_start)",
)
detections_parser.add_argument(
    "limit", type=inputs.int_range(1, 1000), default=100, location="args", help="Frames per page"
)


def stage(job: Job | Row[Any], done: int) -> str:
    """What the job is doing now (one of STAGES)."""
    if job.status.finished:
        return "finished"
    if job.status is not JobStatus.PROCESSING:
        return str(job.status.value)
    if not job.dispatched:
        return "planning"
    if job.frames_total is None or done < job.frames_total:
        return "detecting"
    return "tracking" if job.frames_tracked is not None else "merging"


def options_dict(job: Job | Row[Any]) -> dict[str, Any]:
    """The job's options as the API shows them (classes by label)."""
    classes = None
    if job.classes is not None:
        labels = job_service.configured_labels(job.model_key)
        classes = [labels.get(class_id, str(class_id)) for class_id in job.classes]
    return {
        "sample_fps": job.sample_fps,
        "frame_stride": job.frame_stride,
        "start": job.start_time,
        "end": job.end_time,
        "classes": classes,
        "track": bool(job.track),
        "model": job.model_key or models.catalog().default,
    }


def render_dict(job: Job | Row[Any]) -> dict[str, Any] | None:
    """The job's annotated video as the API shows it; None when none was asked for."""
    if job.render_status is None:
        return None
    done, total = job.render_frames_done or 0, job.frame_count
    succeeded = job.render_status is RenderStatus.SUCCEEDED
    return {
        "status": job.render_status.value,
        "frames_done": done,
        "percent": 100.0 if succeeded else (round(min(100.0, 100.0 * done / total), 1) if total else 0.0),
        "error": job.render_error,
        "url": url_for("api.jobs_video_annotated", job_id=job.id)
        if succeeded and job.video_deleted_at is None
        else None,
    }


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
        "queue_position": (position := admission.queue_position(job)),
        "waiting": admission.waiting_message(job, position),
        "progress": {
            "frames_done": done,
            "frames_total": total,
            "percent": round(100.0 * done / total, 1) if total else 0.0,
            "stage": stage(job, done),
            "frames_tracked": job.frames_tracked,
        },
        "options": options_dict(job),
        "tracks_total": job.tracks_total,
        "video": {
            "codec": job.codec,
            "width": job.width,
            "height": job.height,
            "fps": job.fps,
            "frame_count": job.frame_count,
            "duration": job.duration,
            "rotation": job.rotation,
            "expires_at": job.video_expires_at.isoformat() if job.video_expires_at else None,
            "deleted_at": job.video_deleted_at.isoformat() if job.video_deleted_at else None,
        },
        "objects_total": job.objects_total,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "source_url": job.source_url,
        "bytes_downloaded": job.bytes_downloaded,
        "bytes_total": job.bytes_total,
        "callback_url": job.callback_url,
        "detections_url": url_for("api.jobs_detections", job_id=job.id),
        "tracks_url": url_for("api.jobs_tracks", job_id=job.id),
        "render": render_dict(job),
    }


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

    @ns.doc(id="create_job", security=SECURITY, params=HEADER_DOC)
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
    @ns.response(409, "The job has already finished", error_model)
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
        job, frames, following = job_service.get_detections(current_user.id, job_id, start, limit)
        text = detections_page_json(
            job_id=job.id,
            frames_total=job.frames_total or 0,
            start=start,
            limit=limit,
            frames=frames,
            next_start=following,
        )
        return current_app.response_class(text, mimetype="application/json")
