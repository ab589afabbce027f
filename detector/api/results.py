"""A succeeded job's tracks and exports, and the model's labels.

- ``GET /api/jobs/<id>/tracks``: one entry per track of a tracked job, paged.
- ``GET /api/jobs/<id>/export?format=...``: the whole job as one file (COCO,
  MOTChallenge, CVAT for video, CSV or JSON Lines), streamed.
- ``GET /api/labels``: the labels (and class ids) a job's ``classes`` may name.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, stream_with_context
from flask_restx import Namespace, Resource, fields, inputs, reqparse

from detector.api.authn import SECURITY, authenticated, current_user
from detector.api.errors import error_model
from detector.api.fields import NullableFloat, NullableInteger, NullableList
from detector.api.jobs import JOB_ID, JOB_ID_PARAM, MAX_FRAME_INDEX, UNAUTHORIZED, ModelName, parse_args
from detector.exports import FORMATS
from detector.services import jobs as job_service
from detector.services import models, results

ns = Namespace(
    "results",
    description="A succeeded job's tracks and its detections as one file in a standard format",
    decorators=[authenticated()],
)
labels_ns = Namespace("labels", description="The classes the model detects", decorators=[authenticated()])

track_model = ns.model(
    "Track",
    {
        "track_id": fields.Integer(required=True, min=1, description="The track's id in this job", example=7),
        "label": fields.String(required=True, description="The tracked object's class name", example="car"),
        "class_id": fields.Integer(required=True, description="The model's class id", example=3),
        "first_frame": fields.Integer(
            required=True, description="Frame index where it is first seen", example=12
        ),
        "last_frame": fields.Integer(
            required=True, description="Frame index where it is last seen", example=250
        ),
        "first_timestamp": fields.Float(required=True, description="Seconds, first seen", example=0.48),
        "last_timestamp": fields.Float(required=True, description="Seconds, last seen", example=10.0),
        "frames": fields.Integer(
            required=True, min=1, description="Analysed frames in which it was seen", example=230
        ),
        "mean_score": fields.Float(
            required=True, min=0, max=1, description="Its objects' mean score", example=0.91
        ),
        "best_frame": NullableInteger(
            required=True,
            description="Frame index of its best-scoring object, the one its thumbnail shows "
            "(null for tracks stored by older versions)",
            example=140,
        ),
        "best_score": NullableFloat(
            required=True, min=0, max=1, description="The score of its best-scoring object", example=0.97
        ),
        "best_box": NullableList(
            fields.Float,
            required=True,
            min_items=4,
            max_items=4,
            description="The box of its best-scoring object, [x1, y1, x2, y2] in pixels",
            example=[412.0, 96.5, 530.0, 388.0],
        ),
    },
)
tracks_page_model = ns.model(
    "TracksPage",
    {
        "job_id": fields.String(required=True, description="The job these tracks belong to", example=JOB_ID),
        "tracks_total": fields.Integer(required=True, min=0, description="Tracks of the job", example=42),
        "start": fields.Integer(required=True, min=0, description="The start asked for", example=1),
        "limit": fields.Integer(required=True, min=1, description="The limit asked for", example=100),
        "next_start": NullableInteger(
            required=True, description="start of the next page; null on the last page", example=101
        ),
        "tracks": fields.List(fields.Nested(track_model), required=True, description="By track id"),
    },
)
label_model = labels_ns.model(
    "Label",
    {
        "class_id": fields.Integer(required=True, description="The model's class id", example=1),
        "label": fields.String(required=True, description="The class's name", example="person"),
    },
)
labels_model = labels_ns.model(
    "Labels",
    {
        "model": fields.String(
            required=True,
            description="The model these labels are of, as a job of it reports it in `model`: "
            "backend/model@weights",
            example="torchvision/fasterrcnn_mobilenet_v3_large_fpn@fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
        ),
        "labels": fields.List(fields.Nested(label_model), required=True, description="By class id"),
    },
)
ns.add_model(error_model.name, error_model)
labels_ns.add_model(error_model.name, error_model)

tracks_parser = reqparse.RequestParser()
tracks_parser.add_argument(
    "start",
    type=inputs.int_range(0, MAX_FRAME_INDEX),
    default=0,
    location="args",
    help="First track id of the page (a page's next_start)",
)
tracks_parser.add_argument(
    "limit", type=inputs.int_range(1, 1000), default=100, location="args", help="Tracks per page"
)
export_parser = reqparse.RequestParser()
export_parser.add_argument(
    "format",
    type=str,
    choices=FORMATS,
    case_sensitive=False,
    required=True,
    location="args",
    help="coco (COCO JSON), mot (MOTChallenge; tracked jobs only), cvat (CVAT for video 1.1 XML), "
    "csv, or jsonl (one analysed frame per line)",
)


@ns.route("/<string:job_id>/tracks", endpoint="jobs_tracks")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobTracks(Resource):
    @ns.doc(id="list_tracks", security=SECURITY)
    @ns.expect(tracks_parser)
    @ns.response(
        200, "One page of tracks, by track id (none for a job without track=true)", tracks_page_model
    )
    @ns.response(400, "A bad start or limit", error_model)
    @ns.response(409, "The job has not succeeded (yet)", error_model)
    def get(self, job_id: str) -> dict[str, Any]:
        """The objects followed across a tracked job's frames: label, first and last frame, score."""
        args = parse_args(tracks_parser)
        job, tracks, following = results.get_tracks(current_user.id, job_id, args["start"], args["limit"])
        return {
            "job_id": job.id,
            "tracks_total": job.tracks_total or 0,
            "start": args["start"],
            "limit": args["limit"],
            "next_start": following,
            "tracks": [results.track_dict(t) for t in tracks],
        }


@ns.route("/<string:job_id>/export", endpoint="jobs_export")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class JobExport(Resource):
    @ns.doc(id="export_job", security=SECURITY)
    @ns.expect(export_parser)
    @ns.produces(["application/json", "text/plain", "application/xml", "text/csv", "application/x-ndjson"])
    @ns.response(200, "The file, streamed, with a Content-Disposition filename")
    @ns.response(400, "An unknown format", error_model)
    @ns.response(409, "The job has not succeeded (yet), or mot for a job without tracks", error_model)
    def get(self, job_id: str) -> Response:
        """The job's detections as one file: coco, mot, cvat, csv or jsonl."""
        args = parse_args(export_parser)
        made = results.export_job(current_user.id, job_id, args["format"])
        pieces = (piece.encode() for piece in made.pieces)
        return current_app.response_class(
            stream_with_context(pieces),
            mimetype=made.media_type,
            headers={"Content-Disposition": f'attachment; filename="{made.filename}"'},
        )


labels_parser = reqparse.RequestParser()
labels_parser.add_argument(
    "model", type=ModelName(), location="args", required=False, help="A model's name (GET /api/models)"
)


@labels_ns.route("")
@labels_ns.response(401, UNAUTHORIZED, error_model)
class Labels(Resource):
    @labels_ns.doc(id="list_labels", security=SECURITY)
    @labels_ns.response(200, "The model's labels", labels_model)
    @labels_ns.response(503, "The deployment's model settings cannot be used here", error_model)
    @labels_ns.expect(labels_parser)
    @labels_ns.response(400, "An unknown model", error_model)
    def get(self) -> dict[str, Any]:
        """The classes a model detects (the default model's unless `model` names
        another): what a job's `classes` may name."""
        model = models.choose(parse_args(labels_parser)["model"])
        labels = job_service.configured_labels(model)
        return {
            "model": job_service.configured_model(model),
            "labels": [{"class_id": i, "label": labels[i]} for i in sorted(labels)],
        }
