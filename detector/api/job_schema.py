"""The API document's side of /api/jobs: the job's models (what the answers hold)
and the request parsers (what a request may send), with the types that state
their bounds in the document.

detector.api.jobs registers the models on its namespace and handles the requests;
detector.api.job_views fills the models.
"""

from __future__ import annotations

from typing import Any

from flask_restx import Model, fields, inputs, reqparse
from werkzeug.datastructures import FileStorage

from detector.api.fields import (
    NullableDateTime,
    NullableFloat,
    NullableInteger,
    NullableList,
    NullableNested,
    NullableString,
)
from detector.config import current_settings
from detector.services import models, options
from detector.services.errors import Misconfigured

JOB_ID = "4f6c0b1d9a6e4d0e8f5a2b7c3d9e1f20"
STATUSES = ["downloading", "queued", "processing", "succeeded", "failed", "cancelled"]
STAGES = ["downloading", "queued", "planning", "detecting", "merging", "tracking", "finished"]

progress_model = Model(
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
options_model = Model(
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
video_model = Model(
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
render_model = Model(
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
job_model = Model(
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
job_page_model = Model(
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
object_model = Model(
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
frame_model = Model(
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
detections_model = Model(
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
# The models above, for the namespace to register.
MODELS = (
    progress_model,
    options_model,
    video_model,
    render_model,
    job_model,
    job_page_model,
    object_model,
    frame_model,
    detections_model,
)

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


class ModelName:
    """The type of a ``model`` field (an upload's, GET /api/labels') in the API document:
    one of the deployment's model names, the default model's by default.

    The names are read from the app's model catalog when the document is built (once
    per app). Where the catalog cannot be read (the requests answer 503), the field
    is documented as any string.
    """

    @property
    def __schema__(self) -> dict[str, Any]:
        try:
            catalog = models.catalog()
        except Misconfigured:
            return {"type": "string"}
        return {"type": "string", "enum": list(catalog), "default": catalog.default}

    def __call__(self, value: str) -> str:
        return value


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
    "(the job starts in status downloading); exactly one of video and source_url",
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
    type=ModelName(),
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
    "chosen by timestamp so that variable-frame-rate video is sampled evenly. "
    "Not with frame_stride: give at most one of the two (both is a 400).",
)
upload_parser.add_argument(
    "frame_stride",
    location="form",
    type=Bounded(int, 1, options.MAX_FRAME_STRIDE, 1),
    required=False,
    help=f"Analyse every k-th frame (1 to {options.MAX_FRAME_STRIDE}); 1, the default, is every frame. "
    "Not with sample_fps: give at most one of the two (both is a 400).",
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

# What the upload's form fields cannot say in Swagger 2.0 (formData parameters are
# each optional or required on their own), as vendor extensions on create_job; the
# parameters' descriptions say the same in words. Breaking either rule is a 400.
UPLOAD_EXCLUSIONS = {
    # Each group: exactly one of its fields.
    "x-exactly-one-of": [["video", "source_url"]],
    # Each group: at most one of its fields.
    "x-at-most-one-of": [["sample_fps", "frame_stride"]],
}

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
