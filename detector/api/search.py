"""Moments across all of the caller's jobs, and track thumbnails (docs/search.md).

- ``GET /api/search?labels=person,dog``: where the labels appear together, newest
  job first, paged by cursor.
- ``GET /api/jobs/<id>/tracks/<track_id>/thumbnail``: a track's best box as a JPEG;
  takes a ``media_token`` too, so an ``<img>`` can show it.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, url_for
from flask_restx import Namespace, Resource, fields, inputs, reqparse

from detector.api.authn import SECURITY, authenticated, current_user, media_viewer
from detector.api.errors import error_model
from detector.api.fields import NullableString
from detector.api.jobs import JOB_ID, JOB_ID_PARAM, UNAUTHORIZED, parse_args
from detector.services import media
from detector.services import search as search_service

ns = Namespace("search", description="Moments where labels appear together, across all your jobs")
thumbnails_ns = Namespace("thumbnails", description="A small picture of each track of a tracked job")
ns.add_model(error_model.name, error_model)
thumbnails_ns.add_model(error_model.name, error_model)

MAX_TRACK_ID = 2**31 - 1


class Seconds:
    """A seconds parameter's type in the API document: a number from 0 to ``maximum``
    (the view checks the range: `search_service.check_seconds`)."""

    def __init__(self, maximum: float) -> None:
        self.maximum = maximum

    @property
    def __schema__(self) -> dict[str, Any]:
        return {"type": "number", "minimum": 0, "maximum": self.maximum, "default": 0}

    def __call__(self, value: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"must be a number from 0 to {self.maximum:g}") from None


class Text:
    """A text parameter's type in the API document: at most ``max_length`` characters
    matching ``pattern``. The view reads the value with the parser the pattern
    describes (for ``labels``, `search_service.parse_labels`; for ``zone``,
    `search_service.split_zone`), so what the document allows is what is read."""

    def __init__(self, pattern: str, max_length: int, min_length: int = 0) -> None:
        self.pattern, self.max_length, self.min_length = pattern, max_length, min_length

    @property
    def __schema__(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "maxLength": self.max_length, "pattern": self.pattern}
        if self.min_length:
            schema["minLength"] = self.min_length
        return schema

    def __call__(self, value: str) -> str:
        return str(value)


search_parser = reqparse.RequestParser()
search_parser.add_argument(
    "labels",
    type=Text(search_service.LABELS_PATTERN, search_service.MAX_LABELS_LENGTH, min_length=1),
    required=True,
    location="args",
    help=f"1 to {search_service.MAX_LABELS} labels, comma separated, as jobs name them (GET /api/labels): "
    "moments where all of them appear",
)
search_parser.add_argument(
    "window",
    type=Seconds(search_service.MAX_WINDOW),
    default=0.0,
    location="args",
    help="Seconds: objects seen this far apart still count as together",
)
search_parser.add_argument(
    "min_duration",
    type=Seconds(search_service.MAX_MIN_DURATION),
    default=0.0,
    location="args",
    help="Seconds: shorter moments are left out",
)
search_parser.add_argument(
    "zone",
    type=Text(search_service.ZONE_PATTERN, search_service.MAX_ZONE_LENGTH),
    location="args",
    help="<analytics id>:<zone name>: only moments inside that zone, in the jobs that ran that analytics "
    "(the same spec has the same id on every job)",
)
search_parser.add_argument(
    "limit", type=inputs.int_range(1, 100), default=20, location="args", help="Moments per page"
)


search_parser.add_argument(
    "cursor",
    # Base64url text. Only a next_cursor of this API is a cursor (others are a 400).
    type=Text("^[A-Za-z0-9_-]*$", 400),
    location="args",
    help="The next_cursor of the page before (only that: another value is a 400); none or empty for the "
    "first page",
)

moment_track_model = ns.model(
    "MomentTrack",
    {
        "track_id": fields.Integer(required=True, min=1, description="The track's id in its job", example=3),
        "label": fields.String(
            required=True, description="The tracked object's class name", example="person"
        ),
        "first_frame": fields.Integer(required=True, description="Frame where it is first seen", example=250),
        "last_frame": fields.Integer(required=True, description="Frame where it is last seen", example=612),
        "thumbnail_url": NullableString(
            required=True,
            description="Its thumbnail (a JPEG, media token included, good for MEDIA_URL_SECONDS); "
            "null when the job has none for it",
            example="/api/jobs/…/tracks/3/thumbnail?media_token=…",
        ),
    },
)
moment_model = ns.model(
    "Moment",
    {
        "job_id": fields.String(required=True, description="The job", example=JOB_ID),
        "filename": fields.String(
            required=True, description="The job's video as uploaded", example="garden.mp4"
        ),
        "job_created_at": fields.DateTime(
            required=True, description="When the job was created", example="2026-12-07T06:00:00+00:00"
        ),
        "start_frame": fields.Integer(required=True, min=0, description="Frame where it starts", example=300),
        "end_frame": fields.Integer(required=True, min=0, description="Frame where it ends", example=612),
        "start_time": fields.Float(required=True, min=0, description="Seconds, start", example=12.0),
        "end_time": fields.Float(required=True, min=0, description="Seconds, end", example=24.48),
        "duration": fields.Float(required=True, min=0, description="Seconds", example=12.48),
        "tracks_total": fields.Integer(required=True, min=1, description="Tracks present in it", example=2),
        "tracks": fields.List(
            fields.Nested(moment_track_model),
            required=True,
            description=f"The tracks present in it, by track id: {search_service.MAX_MOMENT_TRACKS} at most",
        ),
        "player_url": fields.String(
            required=True,
            description="The web app's page of the job, playing from start_time",
            example="/#/jobs/4f6c0b1d9a6e4d0e8f5a2b7c3d9e1f20?t=12.0",
        ),
    },
)
search_page_model = ns.model(
    "SearchPage",
    {
        "labels": fields.List(
            fields.String, required=True, description="The labels searched for", example=["person", "dog"]
        ),
        "window": fields.Float(required=True, min=0, description="The window asked for", example=2.0),
        "min_duration": fields.Float(
            required=True, min=0, description="The min_duration asked for", example=1.0
        ),
        "limit": fields.Integer(required=True, min=1, description="The limit asked for", example=20),
        "next_cursor": NullableString(
            required=True,
            description="cursor of the next page; null when no job is left. A page may hold fewer than "
            "limit moments and still have one: follow it until it is null",
            example="eyJjIjoiMjAyNi0xMi0wN1QwNjowMDowMCswMDowMCIsImoiOiI0ZjZjIiwicyI6MywiYSI6ZmFsc2V9",
        ),
        "moments": fields.List(
            fields.Nested(moment_model),
            required=True,
            description="Newest job first; a job's in order of time",
        ),
    },
)


def _player_url(job_id: str, start_time: float) -> str:
    return f"/#/jobs/{job_id}?t={start_time:g}"


def _moment_dict(found: search_service.FoundMoment, tokens: dict[str, str]) -> dict[str, Any]:
    job, moment = found.job, found.moment
    if job.id not in tokens:
        tokens[job.id] = media.media_token(current_app.config["SECRET_KEY"], current_user.id, job.id)
    tracks = []
    for span in moment.tracks[: search_service.MAX_MOMENT_TRACKS]:
        thumbnail = None
        if span.track_id in found.thumbnails:
            thumbnail = url_for(
                "api.jobs_track_thumbnail", job_id=job.id, track_id=span.track_id, media_token=tokens[job.id]
            )
        tracks.append(
            {
                "track_id": span.track_id,
                "label": span.label,
                "first_frame": span.first_frame,
                "last_frame": span.last_frame,
                "thumbnail_url": thumbnail,
            }
        )
    return {
        "job_id": job.id,
        "filename": job.original_filename,
        "job_created_at": job.created_at.isoformat(),
        "start_frame": moment.start_frame,
        "end_frame": moment.end_frame,
        "start_time": moment.start_time,
        "end_time": moment.end_time,
        "duration": round(moment.duration, 6),
        "tracks_total": len(moment.tracks),
        "tracks": tracks,
        "player_url": _player_url(job.id, moment.start_time),
    }


@ns.route("", endpoint="search")
@ns.response(401, UNAUTHORIZED, error_model)
class Search(Resource):
    method_decorators = [authenticated()]

    @ns.doc(id="search_moments", security=SECURITY)
    @ns.expect(search_parser)
    @ns.response(200, "One page of moments, newest job first", search_page_model)
    @ns.response(400, "A bad labels, window, min_duration, limit, cursor or zone", error_model)
    def get(self) -> dict[str, Any]:
        """Moments where all the labels appear together (within `window` seconds), across all your jobs.

        Searches tracked jobs' tracks; see docs/search.md.
        """
        args = parse_args(search_parser)
        labels = search_service.parse_labels(args["labels"])
        window = search_service.check_seconds("window", args["window"], search_service.MAX_WINDOW)
        min_duration = search_service.check_seconds(
            "min_duration", args["min_duration"], search_service.MAX_MIN_DURATION
        )
        cursor = search_service.Cursor.decode(args["cursor"]) if args["cursor"] else None
        page = search_service.search_moments(
            current_user.id,
            labels,
            window=window,
            min_duration=min_duration,
            limit=args["limit"],
            cursor=cursor,
            zone=search_service.parse_zone(current_user.id, args["zone"]) if args["zone"] else None,
        )
        tokens: dict[str, str] = {}
        return {
            "labels": list(labels),
            "window": window,
            "min_duration": min_duration,
            "limit": args["limit"],
            "next_cursor": page.next_cursor.encode() if page.next_cursor is not None else None,
            "moments": [_moment_dict(found, tokens) for found in page.moments],
        }


@thumbnails_ns.route(
    f"/<string:job_id>/tracks/<int(max={MAX_TRACK_ID}):track_id>/thumbnail", endpoint="jobs_track_thumbnail"
)
@thumbnails_ns.param("job_id", JOB_ID_PARAM)
@thumbnails_ns.param(
    "track_id", "The track's id in the job", _in="path", type="integer", minimum=0, maximum=MAX_TRACK_ID
)
@thumbnails_ns.response(401, "No credential, or a bad or expired media token", error_model)
@thumbnails_ns.response(404, "No such job (or not yours), no such track, or no thumbnail for it", error_model)
class TrackThumbnail(Resource):
    @thumbnails_ns.doc(
        id="get_track_thumbnail",
        security=SECURITY,
        params={
            "media_token": {
                "in": "query",
                "type": "string",
                "description": "A media token (POST /api/jobs/<id>/media-token, or a search result's URL), "
                "instead of a Bearer token",
            }
        },
    )
    @thumbnails_ns.produces(["image/jpeg", "application/json"])
    @thumbnails_ns.response(200, "The track's best-scoring box, a JPEG whose longest side is at most 128 px")
    def get(self, job_id: str, track_id: int) -> Response:
        """A track's thumbnail: its best-scoring box cut from the video, as a JPEG."""
        user_id = media_viewer(job_id)
        jpeg = search_service.get_thumbnail(user_id, job_id, track_id)
        response = current_app.response_class(jpeg, mimetype="image/jpeg")
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response
