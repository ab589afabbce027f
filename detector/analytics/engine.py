"""The analytics themselves: line crossings, zone visits, dwell, occupancy and speed,
from a job's `Positions` and an `AnalyticsSpec` (docs/analytics.md, Geometry).

A track's path is the polyline through its anchors in frame order, time running
linearly along each piece. Sides and insides are decided per anchor with the
spec's hysteresis, then carried forward over anchors in the hysteresis band
(numpy, over every position at once); only the few places where a track's side
changes are looked at one by one, where the path is intersected with the line or
the zone (shapely).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import LineString, Polygon

from detector.analytics.positions import Positions
from detector.analytics.spec import AnalyticsSpec, ClassFilter, Line, Zone

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _r(value: float) -> float:
    """Figures as the results give them: to a microsecond or micrometre."""
    return round(float(value), 6)


@dataclass(frozen=True)
class Event:
    """One crossing of a line, or entry to or exit from a zone, by one track."""

    timestamp: float
    frame: int
    track_id: int
    label: str
    rule: str
    kind: str  # "line" or "zone"
    event: str  # "cross", "enter" or "exit"
    direction: str | None  # "in" or "out" for a crossing

    def as_json(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "label": self.label,
            "rule": self.rule,
            "kind": self.kind,
            "event": self.event,
            "direction": self.direction,
            "frame": self.frame,
            "timestamp": _r(self.timestamp),
        }


@dataclass(frozen=True)
class Visit:
    """One track's stay in a zone, from its entry to its exit (seconds)."""

    track_id: int
    enter: float
    exit: float
    enter_frame: int
    exit_frame: int

    @property
    def seconds(self) -> float:
        return self.exit - self.enter


def _group_starts(track_id: IntArray) -> IntArray:
    """For each row, the index of its track's first row (rows sorted by track)."""
    n = len(track_id)
    first = np.ones(n, dtype=bool)
    first[1:] = track_id[1:] != track_id[:-1]
    return np.maximum.accumulate(np.where(first, np.arange(n), 0))


def _carry_forward(code: IntArray, starts: IntArray) -> IntArray:
    """Each row's last non-zero ``code`` so far within its track (0 before the first)."""
    n = len(code)
    last = np.maximum.accumulate(np.where(code != 0, np.arange(n), -1))
    known = (last >= starts) & (last >= 0)
    return np.where(known, code[np.maximum(last, 0)], 0)


def _interpolate(p: Positions, i: int, t: float) -> tuple[float, int]:
    """Time at fraction ``t`` of the piece from row ``i`` to row ``i + 1``, and the analysed
    frame at or after that point."""
    t0, t1 = float(p.timestamp[i]), float(p.timestamp[i + 1])
    if t <= 0:
        return t0, int(p.frame[i])
    if t >= 1:
        return t1, int(p.frame[i + 1])
    return t0 + t * (t1 - t0), int(p.frame[i + 1])


def crossings(p: Positions, line: Line, hysteresis: float) -> list[Event]:
    """The crossings of ``line`` by the tracks in ``p`` (see docs/analytics.md)."""
    if len(p) < 2:
        return []
    (ax, ay), (bx, by) = line.points
    dx, dy = bx - ax, by - ay
    length = math.hypot(dx, dy)
    # Signed distance from the infinite line: negative on the left (y down).
    distance = (dx * (p.y - ay) - dy * (p.x - ax)) / length
    code = np.where(distance < -hysteresis, -1, np.where(distance > hysteresis, 1, 0)).astype(np.int64)
    if hysteresis == 0:
        code[distance == 0] = 0
    same_track = p.track_id[1:] == p.track_id[:-1]
    # Where each piece (row i to i + 1) meets the segment: fraction t along the piece.
    rx, ry = p.x[1:] - p.x[:-1], p.y[1:] - p.y[:-1]
    denom = rx * dy - ry * dx
    qx, qy = ax - p.x[:-1], ay - p.y[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (qx * dy - qy * dx) / denom
        u = (qx * ry - qy * rx) / denom
    hit = same_track & (denom != 0) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    # For each row, the first piece at or after it that meets the segment.
    n = len(p)
    hits = np.flatnonzero(hit)
    next_hit = np.full(n, n, dtype=np.int64)
    if len(hits):
        position = np.searchsorted(hits, np.arange(n))
        found = position < len(hits)
        next_hit[found] = hits[position[found]]
    sided = np.flatnonzero(code != 0)
    if len(sided) < 2:
        return []
    j, i = sided[:-1], sided[1:]
    change = (p.track_id[j] == p.track_id[i]) & (code[j] != code[i]) & (next_hit[j] < i)
    inside = -1 if line.inside == "left" else 1
    events: list[Event] = []
    for a, b in zip(j[change].tolist(), i[change].tolist(), strict=True):
        piece = int(next_hit[a])
        timestamp, frame = _interpolate(p, piece, float(np.clip(t[piece], 0.0, 1.0)))
        track = int(p.track_id[b])
        events.append(
            Event(
                timestamp,
                frame,
                track,
                p.labels[track][0],
                line.name,
                "line",
                "cross",
                "in" if code[b] == inside else "out",
            )
        )
    return events


def _piece(p: Positions, i: int) -> LineString:
    return LineString([(p.x[i], p.y[i]), (p.x[i + 1], p.y[i + 1])])


def _span_in(piece: LineString, polygon: Polygon) -> tuple[float, float] | None:
    """The first and last fractions along ``piece`` where it is in ``polygon``."""
    common = piece.intersection(polygon)
    if common.is_empty or piece.length == 0:
        return None
    coords = shapely.get_coordinates(common)
    fractions = [piece.project(shapely.Point(c), normalized=True) for c in coords]
    return min(fractions), max(fractions)


def visits(p: Positions, zone: Zone, hysteresis: float) -> list[Visit]:
    """The visits of ``zone`` by the tracks in ``p``, in track then time order (before
    any minimum dwell; see docs/analytics.md)."""
    if not len(p):
        return []
    polygon = zone.shape()
    inner = polygon.buffer(-hysteresis) if hysteresis > 0 else polygon
    if inner.is_empty:
        inner = polygon
    outer = polygon.buffer(hysteresis) if hysteresis > 0 else polygon
    for shape in (polygon, inner, outer):
        shapely.prepare(shape)
    in_polygon = shapely.contains_xy(polygon, p.x, p.y)
    in_inner = shapely.contains_xy(inner, p.x, p.y)
    near = shapely.intersects_xy(outer, p.x, p.y)
    code = np.where(in_inner, 1, np.where(near, 0, -1)).astype(np.int64)
    starts = _group_starts(p.track_id)
    n = len(p)
    first = starts == np.arange(n)
    code[first & (code == 0)] = np.where(in_polygon[first & (code == 0)], 1, -1)
    state = _carry_forward(code, starts)
    last = np.ones(n, dtype=bool)
    last[:-1] = p.track_id[1:] != p.track_id[:-1]
    found: list[Visit] = []
    # Runs of inside rows: a visit each.
    inside = state == 1
    run_start = np.flatnonzero(inside & (first | ~np.roll(inside, 1)))
    run_end = np.flatnonzero(inside & (last | ~np.roll(inside, -1)))
    for k, e in zip(run_start.tolist(), run_end.tolist(), strict=True):
        k0 = k
        while not first[k0] and in_polygon[k0 - 1]:
            k0 -= 1
        if first[k0]:
            enter, enter_frame = float(p.timestamp[k0]), int(p.frame[k0])
        else:
            span = _span_in(_piece(p, k0 - 1), polygon)
            enter, enter_frame = _interpolate(p, k0 - 1, span[0] if span else 1.0)
        ell = e
        while ell > k and not in_polygon[ell]:
            ell -= 1
        if last[e]:
            leave, leave_frame = float(p.timestamp[ell]), int(p.frame[ell])
        else:
            span = _span_in(_piece(p, ell), polygon)
            leave, leave_frame = _interpolate(p, ell, span[1] if span else 0.0)
        found.append(Visit(int(p.track_id[k]), enter, leave, enter_frame, leave_frame))
    # Pieces from an anchor outside the grown polygon to another that cross the shrunk one.
    outside = (code[:-1] == -1) & (code[1:] == -1) & ~last[:-1]
    minx, miny, maxx, maxy = inner.bounds
    xa, xb, ya, yb = p.x[:-1], p.x[1:], p.y[:-1], p.y[1:]
    candidate = outside & (
        (np.maximum(xa, xb) >= minx)
        & (np.minimum(xa, xb) <= maxx)
        & (np.maximum(ya, yb) >= miny)
        & (np.minimum(ya, yb) <= maxy)
    )
    rows = np.flatnonzero(candidate)
    if len(rows):
        coords = np.stack(
            [np.stack([xa[rows], ya[rows]], axis=1), np.stack([xb[rows], yb[rows]], axis=1)], axis=1
        )
        through = shapely.intersects(shapely.linestrings(coords), inner)
        for i in rows[through].tolist():
            span = _span_in(_piece(p, i), polygon)
            if span is None:
                continue
            enter, enter_frame = _interpolate(p, i, span[0])
            leave, leave_frame = _interpolate(p, i, span[1])
            found.append(Visit(int(p.track_id[i]), enter, leave, enter_frame, leave_frame))
    found.sort(key=lambda v: (v.track_id, v.enter))
    return found


def _accepted(p: Positions, classes: ClassFilter) -> Positions:
    if classes.everything:
        return p
    keep = {t for t, (label, _) in p.labels.items() if classes.accepts(label)}
    return p.select(np.isin(p.track_id, np.fromiter(keep, dtype=np.int64, count=len(keep))))


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": _r(np.percentile(array, 50)),
        "p95": _r(np.percentile(array, 95)),
        "max": _r(array.max()),
    }


class _Intervals:
    """The reporting intervals: ``interval`` seconds each from 0 s to the last analysed frame."""

    def __init__(self, interval: float, frame_timestamps: FloatArray) -> None:
        self.interval = interval
        end = float(frame_timestamps.max()) if len(frame_timestamps) else 0.0
        self.count = max(1, math.floor(end / interval) + 1)

    def of(self, timestamp: float) -> int:
        return min(self.count - 1, max(0, math.floor(timestamp / self.interval)))

    def as_json(self) -> list[dict[str, float]]:
        return [
            {"start": _r(k * self.interval), "end": _r((k + 1) * self.interval)} for k in range(self.count)
        ]


def _line_results(events: list[Event], line: Line, intervals: _Intervals) -> dict[str, Any]:
    per: list[dict[str, Counter[str]]] = [{"in": Counter(), "out": Counter()} for _ in range(intervals.count)]
    by_class: dict[str, dict[str, int]] = {}
    for ev in events:
        assert ev.direction is not None
        per[intervals.of(ev.timestamp)][ev.direction][ev.label] += 1
        counts = by_class.setdefault(ev.label, {"in": 0, "out": 0})
        counts[ev.direction] += 1
    return {
        "name": line.name,
        "in": sum(1 for ev in events if ev.direction == "in"),
        "out": sum(1 for ev in events if ev.direction == "out"),
        "by_class": dict(sorted(by_class.items())),
        "intervals": [{k: dict(sorted(v.items())) for k, v in c.items()} for c in per],
    }


def _zone_results(
    found: list[Visit], zone: Zone, p: Positions, intervals: _Intervals
) -> tuple[dict[str, Any], list[Event]]:
    events: list[Event] = []
    for v in found:
        label = p.labels[v.track_id][0]
        events.append(Event(v.enter, v.enter_frame, v.track_id, label, zone.name, "zone", "enter", None))
        events.append(Event(v.exit, v.exit_frame, v.track_id, label, zone.name, "zone", "exit", None))
    per: list[dict[str, Counter[str]]] = [
        {"entries": Counter(), "exits": Counter()} for _ in range(intervals.count)
    ]
    by_class: dict[str, dict[str, int]] = {}
    for ev in events:
        key = "entries" if ev.event == "enter" else "exits"
        per[intervals.of(ev.timestamp)][key][ev.label] += 1
        by_class.setdefault(ev.label, {"entries": 0, "exits": 0})[key] += 1
    # Occupancy at each analysed frame: visits with entry <= t < exit.
    stamps = p.frame_timestamps
    enters = np.sort(np.asarray([v.enter for v in found], dtype=np.float64))
    exits = np.sort(np.asarray([v.exit for v in found], dtype=np.float64))
    occupancy = np.searchsorted(enters, stamps, side="right") - np.searchsorted(exits, stamps, side="right")
    slot = np.minimum(intervals.count - 1, np.floor(stamps / intervals.interval).astype(np.int64))
    rows = []
    for k in range(intervals.count):
        here = occupancy[slot == k]
        rows.append(
            {
                "entries": dict(sorted(per[k]["entries"].items())),
                "exits": dict(sorted(per[k]["exits"].items())),
                "occupancy_max": int(here.max()) if len(here) else 0,
                "occupancy_mean": _r(here.mean()) if len(here) else 0.0,
            }
        )
    dwell: dict[int, list[float]] = {}
    for v in found:
        dwell.setdefault(v.track_id, []).append(v.seconds)
    tracks = [
        {"track_id": t, "label": p.labels[t][0], "visits": len(s), "seconds": _r(sum(s))}
        for t, s in sorted(dwell.items())
    ]
    result = {
        "name": zone.name,
        "entries": len(found),
        "exits": len(found),
        "by_class": dict(sorted(by_class.items())),
        "peak_occupancy": int(occupancy.max()) if len(occupancy) else 0,
        "dwell": {
            "visits": len(found),
            "tracks": len(tracks),
            **_percentiles([float(sum(s)) for s in dwell.values()]),
        },
        "tracks": tracks,
        "intervals": rows,
    }
    return result, events


def _speeds(p: Positions, spec: AnalyticsSpec) -> dict[str, Any] | None:
    if spec.calibration is None:
        return None
    matrix = spec.calibration.matrix()
    points = np.stack([p.x, p.y, np.ones(len(p))], axis=1) @ matrix.T
    gx, gy = points[:, 0] / points[:, 2], points[:, 1] / points[:, 2]
    same = p.track_id[1:] == p.track_id[:-1]
    step = np.where(same, np.hypot(np.diff(gx), np.diff(gy)), 0.0)
    tracks: list[dict[str, Any]] = []
    bounds = np.flatnonzero(np.r_[True, ~same, True])
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if b - a < 2:
            continue
        seconds = float(p.timestamp[b - 1] - p.timestamp[a])
        if seconds <= 0:
            continue
        distance = float(step[a : b - 1].sum())
        track = int(p.track_id[a])
        tracks.append(
            {
                "track_id": track,
                "label": p.labels[track][0],
                "distance_m": _r(distance),
                "seconds": _r(seconds),
                "mean_speed_mps": _r(distance / seconds),
            }
        )
    return {"tracks": tracks, **_percentiles([float(t["mean_speed_mps"]) for t in tracks])}


def analyse(spec: AnalyticsSpec, p: Positions) -> dict[str, Any]:
    """The results of ``spec`` over the tracks in ``p``, as docs/analytics.md shows them."""
    intervals = _Intervals(spec.interval, p.frame_timestamps)
    events: list[Event] = []
    lines = []
    for line in spec.lines:
        found = crossings(_accepted(p, line.classes), line, spec.hysteresis)
        lines.append(_line_results(found, line, intervals))
        events += found
    zones = []
    for zone in spec.zones:
        kept = [
            v
            for v in visits(_accepted(p, zone.classes), zone, spec.hysteresis)
            if v.seconds >= spec.min_dwell
        ]
        result, zone_events = _zone_results(kept, zone, p, intervals)
        zones.append(result)
        events += zone_events
    events.sort(key=lambda ev: (ev.timestamp, ev.track_id, ev.kind, ev.rule, ev.event))
    stamps = p.frame_timestamps
    return {
        "frames": len(stamps),
        "tracks": len(p.labels),
        "duration": _r(stamps.max() - stamps.min()) if len(stamps) else 0.0,
        "width": spec.width,
        "height": spec.height,
        "intervals": intervals.as_json(),
        "lines": lines,
        "zones": zones,
        "speed": _speeds(p, spec),
        "events": [ev.as_json() for ev in events],
    }
