"""/api/jobs/<id>/analytics: counts, dwell, speed and a heatmap over a succeeded job's
tracks, for a spec of zones and lines (docs/analytics.md).

- ``POST``: start the analytics of a spec (the same spec again: the same analytics).
- ``GET`` the list, ``GET``/``DELETE`` one, its ``heatmap`` (PNG) and its ``export``.
- ``POST .../render``: the job's annotated video, drawn with this analytics.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request, stream_with_context, url_for
from flask_restx import Namespace, Resource, fields, reqparse

from detector.api.authn import SECURITY, authenticated, current_user
from detector.api.errors import error_model
from detector.api.fields import NullableDateTime, NullableFloat, NullableList, NullableNested, NullableString
from detector.api.jobs import JOB_ID, JOB_ID_PARAM, UNAUTHORIZED, parse_args, render_dict, render_model
from detector.services import analytics as service
from detector.services.errors import InvalidInput

ns = Namespace(
    "analytics",
    description="Counts across lines, visits and dwell in zones, speeds and a heatmap over a succeeded "
    "job's tracks (docs/analytics.md)",
    decorators=[authenticated()],
)
ns.add_model(error_model.name, error_model)
ns.add_model(render_model.name, render_model)

ANALYTICS_ID = "3f9a0c1d2b4e5f60"
ANALYTICS_ID_PARAM = "The analytics' id, as start_analytics or list_analytics answered it"
ANCHORS = ["bottom_center", "center", "top_center", "bottom_left", "bottom_right", "top_left", "top_right"]
IN_FRAME = "pixels of the stored frame, origin top-left; inside the frame (0 <= x <= width, 0 <= y <= height)"


def _points(
    count: tuple[int, int], description: str, example: list[list[float]], *, in_frame: bool = True
) -> fields.List:
    """A required list of ``count`` (fewest, most) points ``[x, y]``, none negative when
    ``in_frame``."""
    coordinate = fields.Float(min=0) if in_frame else fields.Float
    return fields.List(
        fields.List(coordinate, min_items=2, max_items=2),
        required=True,
        min_items=count[0],
        max_items=count[1],
        description=description,
        example=example,
    )


def _name(kind: str, example: str) -> fields.String:
    """The required ``name`` of a zone or a line (``kind``), unique among the spec's."""
    return fields.String(
        required=True,
        min_length=1,
        max_length=64,
        pattern=r"\S",
        description=f"The {kind}'s name, unique among the spec's {kind}s",
        example=example,
    )


_CLASSES = NullableList(
    fields.String(min_length=1),
    required=False,
    min_items=1,
    max_items=1000,
    description="Count only tracks of these labels (as GET /api/labels names them); absent or null: every class",
    example=["person"],
)
zone_model = ns.model(
    "AnalyticsZone",
    {
        "name": _name("zone", "door"),
        "polygon": _points(
            (3, 100),
            f"The zone's corners [x, y] in order, {IN_FRAME}; edges that do not cross "
            "(a simple polygon) and some area",
            [[100, 400], [300, 400], [300, 560], [100, 560]],
        ),
        "classes": _CLASSES,
    },
    strict=True,
)
line_model = ns.model(
    "AnalyticsLine",
    {
        "name": _name("line", "gate"),
        "points": _points(
            (2, 2), f"Its two ends [x, y], {IN_FRAME}; not the same point", [[0, 300], [768, 300]]
        ),
        "in": fields.String(
            required=False,
            enum=["left", "right"],
            default="left",
            description="The side a crossing into counts as in, seen walking from the first point to "
            "the second on the picture as shown (y down)",
            example="left",
        ),
        "classes": _CLASSES,
    },
    strict=True,
)
calibration_model = ns.model(
    "AnalyticsCalibration",
    {
        "image": _points(
            (4, 4),
            f"Four points on the ground in the picture, {IN_FRAME}; no three on one line",
            [[120, 500], [650, 500], [600, 250], [170, 250]],
        ),
        "world": _points(
            (4, 4),
            "Where those points are on the ground, in metres; no three on one line",
            [[0, 0], [10, 0], [10, 20], [0, 20]],
            in_frame=False,
        ),
    },
    strict=True,
)
spec_model = ns.model(
    "AnalyticsSpec",
    {
        "name": fields.String(
            required=False,
            max_length=200,
            description="A label for people (not part of the identity)",
            example="entrance",
        ),
        "anchor": fields.String(
            required=False,
            enum=ANCHORS,
            default="bottom_center",
            description="The point of a box that stands for the object",
            example="bottom_center",
        ),
        "interval": fields.Float(
            required=False,
            min=0,
            exclusiveMin=True,
            default=60,
            description="Seconds per reporting interval; at most 10,000 intervals of the job",
            example=60,
        ),
        "min_dwell": fields.Float(
            required=False,
            min=0,
            default=0,
            description="Seconds: shorter zone visits are not counted",
            example=1.0,
        ),
        "hysteresis": fields.Float(
            required=False,
            min=0,
            description="Pixels past a line or inside or outside a zone's edge before a side counts; "
            "at most the frame's longer side. Default: 1% of the frame's diagonal",
            example=8,
        ),
        "zones": fields.List(
            fields.Nested(zone_model), required=False, max_items=50, description="Areas", example=None
        ),
        "lines": fields.List(
            fields.Nested(line_model), required=False, max_items=50, description="Lines", example=None
        ),
        "calibration": NullableNested(
            calibration_model, required=False, description="Image points and their ground positions: speeds"
        ),
    },
    strict=True,
)
counts_example = {"person": 3}
interval_model = ns.model(
    "AnalyticsInterval",
    {
        "start": fields.Float(required=True, description="Seconds", example=0.0),
        "end": fields.Float(required=True, description="Seconds", example=60.0),
    },
)
line_interval_model = ns.model(
    "AnalyticsLineInterval",
    {
        "in": fields.Raw(required=True, description="Crossings in, by label", example=counts_example),
        "out": fields.Raw(required=True, description="Crossings out, by label", example=counts_example),
    },
)
line_result_model = ns.model(
    "AnalyticsLineResult",
    {
        "name": fields.String(required=True, description="The line's name", example="gate"),
        "in": fields.Integer(required=True, min=0, description="Crossings in", example=12),
        "out": fields.Integer(required=True, min=0, description="Crossings out", example=9),
        "by_class": fields.Raw(
            required=True, description="Label -> {in, out}", example={"person": {"in": 12, "out": 9}}
        ),
        "intervals": fields.List(
            fields.Nested(line_interval_model), required=True, description="Per interval of results.intervals"
        ),
    },
)
zone_interval_model = ns.model(
    "AnalyticsZoneInterval",
    {
        "entries": fields.Raw(required=True, description="Entries, by label", example=counts_example),
        "exits": fields.Raw(required=True, description="Exits, by label", example=counts_example),
        "occupancy_max": fields.Integer(
            required=True, min=0, description="Most visits open at one analysed frame", example=3
        ),
        "occupancy_mean": fields.Float(
            required=True, min=0, description="Mean visits open over the analysed frames", example=1.4
        ),
    },
)
dwell_model = ns.model(
    "AnalyticsDwell",
    {
        "visits": fields.Integer(required=True, min=0, description="Visits counted", example=7),
        "tracks": fields.Integer(required=True, min=0, description="Tracks that visited", example=6),
        "p50": NullableFloat(required=True, description="Median of the tracks' dwell, seconds", example=3.2),
        "p95": NullableFloat(required=True, description="95th percentile, seconds", example=11.8),
        "max": NullableFloat(required=True, description="Longest, seconds", example=12.5),
    },
)
track_dwell_model = ns.model(
    "AnalyticsTrackDwell",
    {
        "track_id": fields.Integer(required=True, description="The track", example=4),
        "label": fields.String(required=True, description="Its label", example="person"),
        "visits": fields.Integer(required=True, min=1, description="Its visits", example=1),
        "seconds": fields.Float(required=True, min=0, description="Its dwell, summed", example=3.2),
    },
)
zone_result_model = ns.model(
    "AnalyticsZoneResult",
    {
        "name": fields.String(required=True, description="The zone's name", example="door"),
        "entries": fields.Integer(required=True, min=0, description="Visits begun", example=7),
        "exits": fields.Integer(required=True, min=0, description="Visits ended", example=7),
        "by_class": fields.Raw(
            required=True,
            description="Label -> {entries, exits}",
            example={"person": {"entries": 7, "exits": 7}},
        ),
        "peak_occupancy": fields.Integer(
            required=True, min=0, description="Most visits open at once", example=3
        ),
        "dwell": fields.Nested(dwell_model, required=True, description="Dwell over the zone's tracks"),
        "tracks": fields.List(fields.Nested(track_dwell_model), required=True, description="By track id"),
        "intervals": fields.List(
            fields.Nested(zone_interval_model), required=True, description="Per interval of results.intervals"
        ),
    },
)
track_speed_model = ns.model(
    "AnalyticsTrackSpeed",
    {
        "track_id": fields.Integer(required=True, description="The track", example=4),
        "label": fields.String(required=True, description="Its label", example="person"),
        "distance_m": fields.Float(
            required=True, min=0, description="Path length on the ground, m", example=8.1
        ),
        "seconds": fields.Float(required=True, min=0, description="First to last position", example=6.0),
        "mean_speed_mps": fields.Float(required=True, min=0, description="Metres a second", example=1.35),
    },
)
speed_model = ns.model(
    "AnalyticsSpeed",
    {
        "tracks": fields.List(fields.Nested(track_speed_model), required=True, description="By track id"),
        "p50": NullableFloat(required=True, description="Median mean speed, m/s", example=1.3),
        "p95": NullableFloat(required=True, description="95th percentile, m/s", example=1.9),
        "max": NullableFloat(required=True, description="Fastest, m/s", example=2.4),
    },
)
event_model = ns.model(
    "AnalyticsEvent",
    {
        "track_id": fields.Integer(required=True, description="The track", example=4),
        "label": fields.String(required=True, description="Its label", example="person"),
        "rule": fields.String(required=True, description="The line's or zone's name", example="gate"),
        "kind": fields.String(
            required=True, enum=["line", "zone"], description="A line or a zone", example="line"
        ),
        "event": fields.String(
            required=True, enum=["cross", "enter", "exit"], description="What happened", example="cross"
        ),
        "direction": NullableString(
            required=True,
            enum=["in", "out"],
            description="A crossing's direction; null for a zone",
            example="in",
        ),
        "frame": fields.Integer(
            required=True, min=0, description="The analysed frame at or after it", example=131
        ),
        "timestamp": fields.Float(required=True, min=0, description="Seconds, interpolated", example=5.22),
    },
)
results_model = ns.model(
    "AnalyticsResults",
    {
        "frames": fields.Integer(required=True, min=0, description="Analysed frames", example=795),
        "tracks": fields.Integer(required=True, min=0, description="Tracks", example=41),
        "duration": fields.Float(
            required=True, min=0, description="First to last analysed frame, s", example=79.4
        ),
        "width": fields.Integer(required=True, min=1, description="Frame width, pixels", example=768),
        "height": fields.Integer(required=True, min=1, description="Frame height, pixels", example=576),
        "intervals": fields.List(
            fields.Nested(interval_model), required=True, description="Reporting intervals"
        ),
        "lines": fields.List(
            fields.Nested(line_result_model), required=True, description="Per line, spec order"
        ),
        "zones": fields.List(
            fields.Nested(zone_result_model), required=True, description="Per zone, spec order"
        ),
        "speed": NullableNested(speed_model, required=True, description="Speeds; null without a calibration"),
        "events": fields.List(fields.Nested(event_model), required=True, description="In time order"),
    },
)
_ANALYTICS_FIELDS = {
    "id": fields.String(required=True, description="The spec's identity in this job", example=ANALYTICS_ID),
    "job_id": fields.String(required=True, description="The job", example=JOB_ID),
    "name": fields.String(required=True, description="The spec's name", example="entrance"),
    "status": fields.String(
        required=True,
        enum=["queued", "running", "succeeded", "failed"],
        description="The run's state",
        example="succeeded",
    ),
    "stage": fields.String(
        required=True,
        enum=["queued", "tracking", "analysing", "done", "failed"],
        description="What the run is doing (tracking: an untracked job is tracked first)",
        example="done",
    ),
    "progress": fields.Float(required=True, min=0, max=1, description="0 to 1", example=1.0),
    "error": NullableString(
        required=True,
        description="Why it failed; null unless failed",
        example="job 4f6c… is processing; analytics run over a succeeded job's tracks",
    ),
    "created_at": fields.DateTime(
        required=True, description="When it was asked for", example="2026-12-07T06:10:00+00:00"
    ),
    "finished_at": NullableDateTime(
        required=True, description="When it ended", example="2026-12-07T06:10:03+00:00"
    ),
    "spec": fields.Nested(spec_model, required=True, description="The spec, every default filled in"),
    "drawn": fields.Boolean(
        required=True,
        description="Whether the job's annotated video draws this analytics (POST .../render named it last)",
        example=False,
    ),
}
analytics_model = ns.model("Analytics", _ANALYTICS_FIELDS)
analytics_results_model = ns.model(
    "AnalyticsWithResults",
    {
        **_ANALYTICS_FIELDS,
        "results": NullableNested(results_model, required=True, description="null until succeeded"),
    },
)
analytics_list_model = ns.model(
    "AnalyticsList",
    {"analytics": fields.List(fields.Nested(analytics_model), required=True, description="Newest first")},
)
export_parser = reqparse.RequestParser()
export_parser.add_argument(
    "format",
    type=str,
    choices=service.EXPORTS,
    required=True,
    location="args",
    help="events-csv, events-jsonl (one event per line) or counts-csv (counts per interval)",
)
LOCATION = {"Location": {"type": "string", "description": "The analytics' URL"}}
NOT_FOUND = "No such job or analytics (or not yours)"


@ns.route("/<string:job_id>/analytics", endpoint="jobs_analytics")
@ns.param("job_id", JOB_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such job (or not yours)", error_model)
class AnalyticsList(Resource):
    @ns.doc(id="list_analytics", security=SECURITY)
    @ns.response(200, "The job's analytics, newest first, without results", analytics_list_model)
    def get(self, job_id: str) -> dict[str, Any]:
        """List a job's analytics: id, name, status and progress of each."""
        found = service.list_analytics(current_user.id, job_id)
        return {"analytics": [service.analytics_dict(a, with_results=False) for a in found]}

    @ns.doc(id="start_analytics", security=SECURITY)
    @ns.expect((spec_model, "The spec, as JSON"))
    @ns.response(202, "Started (queued); follow it at the Location header", analytics_model, headers=LOCATION)
    @ns.response(200, "The job already has this spec: its analytics", analytics_model, headers=LOCATION)
    @ns.response(
        400,
        "A bad spec; the message names the field (a point outside the frame, a polygon whose edges cross, "
        "a line of zero length, a name used twice, calibration points three on one line)",
        error_model,
    )
    @ns.response(409, "The job has not succeeded", error_model)
    @ns.response(503, "The message broker did not take the run; ask again", error_model)
    def post(self, job_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Count line crossings, zone visits, dwell and speed over the job's tracks.

        The same spec again answers the same analytics (200); a failed one is started again.
        """
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidInput("send the spec as a JSON object")
        found, started = service.start_analytics(current_user.id, job_id, body)
        location = {"Location": url_for("api.jobs_analytics_one", job_id=found.job_id, analytics_id=found.id)}
        return service.analytics_dict(found, with_results=False), 202 if started else 200, location


@ns.route("/<string:job_id>/analytics/<string:analytics_id>", endpoint="jobs_analytics_one")
@ns.param("job_id", JOB_ID_PARAM)
@ns.param("analytics_id", ANALYTICS_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, NOT_FOUND, error_model)
class AnalyticsOne(Resource):
    @ns.doc(id="get_analytics", security=SECURITY)
    @ns.response(200, "Its status, progress and, once succeeded, results", analytics_results_model)
    def get(self, job_id: str, analytics_id: str) -> dict[str, Any]:
        """One analytics: status, progress, error and results."""
        found = service.get_analytics(current_user.id, job_id, analytics_id)
        return service.analytics_dict(found, with_results=True)

    @ns.doc(id="delete_analytics", security=SECURITY)
    @ns.response(204, "Deleted")
    def delete(self, job_id: str, analytics_id: str) -> tuple[str, int]:
        """Delete one analytics and its results."""
        service.delete_analytics(current_user.id, job_id, analytics_id)
        return "", 204


@ns.route("/<string:job_id>/analytics/<string:analytics_id>/heatmap", endpoint="jobs_analytics_heatmap")
@ns.param("job_id", JOB_ID_PARAM)
@ns.param("analytics_id", ANALYTICS_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, NOT_FOUND, error_model)
class AnalyticsHeatmap(Resource):
    @ns.doc(id="get_analytics_heatmap", security=SECURITY)
    @ns.produces(["image/png", "application/json"])
    @ns.response(200, "A PNG the frame's size: where the objects' anchors were, blue (few) to red (most)")
    @ns.response(409, "The analytics have not succeeded", error_model)
    def get(self, job_id: str, analytics_id: str) -> Response:
        """The heatmap of the tracked objects' anchor positions (PNG)."""
        png = service.heatmap(current_user.id, job_id, analytics_id)
        return current_app.response_class(png, mimetype="image/png")


@ns.route("/<string:job_id>/analytics/<string:analytics_id>/export", endpoint="jobs_analytics_export")
@ns.param("job_id", JOB_ID_PARAM)
@ns.param("analytics_id", ANALYTICS_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, NOT_FOUND, error_model)
class AnalyticsExport(Resource):
    @ns.doc(id="export_analytics", security=SECURITY)
    @ns.expect(export_parser)
    @ns.produces(["text/csv", "application/x-ndjson", "application/json"])
    @ns.response(200, "The file, streamed, with a Content-Disposition filename")
    @ns.response(400, "An unknown format", error_model)
    @ns.response(409, "The analytics have not succeeded", error_model)
    def get(self, job_id: str, analytics_id: str) -> Response:
        """The events (CSV or JSON Lines) or the counts per interval (CSV) as a file."""
        args = parse_args(export_parser)
        made = service.export_analytics(current_user.id, job_id, analytics_id, args["format"])
        pieces = (piece.encode() for piece in made.pieces)
        return current_app.response_class(
            stream_with_context(pieces),
            mimetype=made.media_type,
            headers={"Content-Disposition": f'attachment; filename="{made.filename}"'},
        )


@ns.route("/<string:job_id>/analytics/<string:analytics_id>/render", endpoint="jobs_analytics_render")
@ns.param("job_id", JOB_ID_PARAM)
@ns.param("analytics_id", ANALYTICS_ID_PARAM)
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, NOT_FOUND, error_model)
class AnalyticsRender(Resource):
    @ns.doc(id="render_analytics", security=SECURITY)
    @ns.response(202, "Rendering started; follow it in the job's `render`", render_model)
    @ns.response(
        200, "The job's render already draws this analytics (queued, rendering or succeeded)", render_model
    )
    @ns.response(409, "The analytics have not succeeded", error_model)
    @ns.response(410, "The job's stored video was deleted at the end of its retention", error_model)
    @ns.response(503, "The message broker did not take the render; ask again", error_model)
    def post(self, job_id: str, analytics_id: str) -> tuple[dict[str, Any], int]:
        """Draw the job's annotated video with this analytics' zones, lines and running counts.

        The job's one annotated video (GET /api/jobs/<id>/video/annotated) is drawn again
        when it was drawn with another analytics or none.
        """
        job, started = service.draw_in_render(current_user.id, job_id, analytics_id)
        return render_dict(job) or {}, 202 if started else 200
