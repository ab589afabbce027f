"""An analytics spec: what to count over a job's tracks (zones, lines, anchor, interval,
dwell, calibration), checked against the frame it is for and put in canonical form.

`parse_spec` takes the JSON a client sends and returns a frozen `AnalyticsSpec`
with every default filled in, or raises `SpecError` naming the first bad field
(``zones[0].polygon``). `AnalyticsSpec.canonical_json` is its identity: the same
spec, however it was written, gives the same text and so the same `spec_id`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry import Polygon
from shapely.validation import explain_validity

ANCHORS = ("bottom_center", "center", "top_center", "bottom_left", "bottom_right", "top_left", "top_right")
SIDES = ("left", "right")
MAX_ZONES = 50
MAX_LINES = 50
MAX_POLYGON_POINTS = 100
MAX_NAME_CHARS = 64
MAX_CLASSES = 1000
MAX_INTERVALS = 10_000
DEFAULT_INTERVAL = 60.0
# The default hysteresis, as a fraction of the frame's diagonal.
DEFAULT_HYSTERESIS_OF_DIAGONAL = 0.01
SPEC_KEYS = frozenset(
    {"name", "anchor", "interval", "min_dwell", "hysteresis", "zones", "lines", "calibration"}
)
ZONE_KEYS = frozenset({"name", "polygon", "classes"})
LINE_KEYS = frozenset({"name", "points", "in", "classes"})
CALIBRATION_KEYS = frozenset({"image", "world"})

Point = tuple[float, float]


class SpecError(ValueError):
    """A spec that cannot be used: ``field`` is where (``lines[1].points``), the
    message says what is wrong and starts with the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ClassFilter:
    """The tracks a rule counts: those whose label is in ``labels``; every track when None."""

    labels: frozenset[str] | None = None

    @property
    def everything(self) -> bool:
        return self.labels is None

    def accepts(self, label: str) -> bool:
        return self.labels is None or label in self.labels

    def as_json(self) -> list[str] | None:
        return None if self.labels is None else sorted(self.labels)


@dataclass(frozen=True)
class Zone:
    """A named area: a simple polygon in frame pixels."""

    name: str
    polygon: tuple[Point, ...]
    classes: ClassFilter = field(default_factory=ClassFilter)

    def shape(self) -> Polygon:
        return Polygon(self.polygon)


@dataclass(frozen=True)
class Line:
    """A named line segment from ``points[0]`` to ``points[1]``; ``inside`` is the side
    (``left`` or ``right``, walking from the first point to the second on the picture
    as shown, y down) a crossing into counts as ``in``."""

    name: str
    points: tuple[Point, Point]
    inside: str = "left"
    classes: ClassFilter = field(default_factory=ClassFilter)


@dataclass(frozen=True)
class Calibration:
    """Four image points and the ground positions (metres) they show."""

    image: tuple[Point, Point, Point, Point]
    world: tuple[Point, Point, Point, Point]

    def matrix(self) -> np.ndarray:
        """The 3x3 perspective transform from image pixels to metres."""
        import cv2

        return np.asarray(
            cv2.getPerspectiveTransform(
                np.asarray(self.image, dtype=np.float32), np.asarray(self.world, dtype=np.float32)
            ),
            dtype=np.float64,
        )


@dataclass(frozen=True)
class AnalyticsSpec:
    """A checked spec with its defaults filled in (see docs/analytics.md, The spec)."""

    width: int
    height: int
    name: str = ""
    anchor: str = "bottom_center"
    interval: float = DEFAULT_INTERVAL
    min_dwell: float = 0.0
    hysteresis: float = 0.0
    zones: tuple[Zone, ...] = ()
    lines: tuple[Line, ...] = ()
    calibration: Calibration | None = None

    def as_json(self) -> dict[str, Any]:
        """The spec as JSON values, every field present (the frame size is not part of it)."""
        return {
            "name": self.name,
            "anchor": self.anchor,
            "interval": self.interval,
            "min_dwell": self.min_dwell,
            "hysteresis": self.hysteresis,
            "zones": [
                {"name": z.name, "polygon": [list(p) for p in z.polygon], "classes": z.classes.as_json()}
                for z in self.zones
            ],
            "lines": [
                {
                    "name": ln.name,
                    "points": [list(p) for p in ln.points],
                    "in": ln.inside,
                    "classes": ln.classes.as_json(),
                }
                for ln in self.lines
            ],
            "calibration": None
            if self.calibration is None
            else {
                "image": [list(p) for p in self.calibration.image],
                "world": [list(p) for p in self.calibration.world],
            },
        }

    def canonical_json(self) -> str:
        """The spec's identity: its JSON with keys sorted and no spaces. The name is left
        out: renaming a spec does not change what it counts."""
        body = self.as_json()
        del body["name"]
        return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @property
    def spec_id(self) -> str:
        """The first 16 hex digits of the SHA-256 of `canonical_json`."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(where, f"{json.dumps(value)} is not a finite number")
    return float(value)


def _point(value: Any, where: str, width: int, height: int) -> Point:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SpecError(where, "a point is [x, y]")
    x, y = _number(value[0], where), _number(value[1], where)
    if not (0 <= x <= width and 0 <= y <= height):
        raise SpecError(where, f"({x:g}, {y:g}) is outside the {width}x{height} frame")
    return x, y


def _name(value: Any, where: str, taken: set[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(where, "a name is required (a non-empty string)")
    name = value.strip()
    if len(name) > MAX_NAME_CHARS:
        raise SpecError(where, f"at most {MAX_NAME_CHARS} characters")
    if name in taken:
        raise SpecError(where, f"{name!r} is used twice")
    taken.add(name)
    return name


def _classes(value: Any, where: str) -> ClassFilter:
    if value is None:
        return ClassFilter()
    if not isinstance(value, list) or not value or len(value) > MAX_CLASSES:
        raise SpecError(where, f"a list of 1 to {MAX_CLASSES} labels, or null for every class")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise SpecError(f"{where}[{i}]", "a label (a non-empty string, as GET /api/labels names it)")
    return ClassFilter(frozenset(value))


def _mapping(value: Any, where: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(where, "an object is required")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}" if where else unknown[0], "no such field")
    return value


def _list(value: Any, where: str, most: int) -> Sequence[Any]:
    if not isinstance(value, list) or len(value) > most:
        raise SpecError(where, f"a list of at most {most}")
    return value


def _zone(value: Any, where: str, width: int, height: int, taken: set[str]) -> Zone:
    body = _mapping(value, where, ZONE_KEYS)
    name = _name(body.get("name"), f"{where}.name", taken)
    raw = body.get("polygon")
    if not isinstance(raw, list) or not 3 <= len(raw) <= MAX_POLYGON_POINTS:
        raise SpecError(f"{where}.polygon", f"a list of 3 to {MAX_POLYGON_POINTS} points [x, y]")
    points = tuple(_point(p, f"{where}.polygon[{i}]", width, height) for i, p in enumerate(raw))
    shape = Polygon(points)
    spread = np.asarray(points) - np.asarray(points[0])
    if np.linalg.matrix_rank(spread, tol=1e-9 * max(1.0, float(np.abs(spread).max()))) < 2:
        raise SpecError(f"{where}.polygon", "the polygon has no area (its points are on one line)")
    if not shape.is_valid:
        reason = explain_validity(shape)
        raise SpecError(f"{where}.polygon", f"the polygon's edges cross or touch ({reason})")
    return Zone(name, points, _classes(body.get("classes"), f"{where}.classes"))


def _line(value: Any, where: str, width: int, height: int, taken: set[str]) -> Line:
    body = _mapping(value, where, LINE_KEYS)
    name = _name(body.get("name"), f"{where}.name", taken)
    raw = body.get("points")
    if not isinstance(raw, list) or len(raw) != 2:
        raise SpecError(f"{where}.points", "two points [[x1, y1], [x2, y2]]")
    a, b = (_point(p, f"{where}.points[{i}]", width, height) for i, p in enumerate(raw))
    if a == b:
        raise SpecError(f"{where}.points", "the two points are the same (a line of zero length)")
    inside = body.get("in", "left")
    if inside not in SIDES:
        raise SpecError(f"{where}.in", "left or right (the side a crossing into counts as in)")
    return Line(name, (a, b), inside, _classes(body.get("classes"), f"{where}.classes"))


def _four(value: Any, where: str, bounds: tuple[int, int] | None) -> tuple[Point, Point, Point, Point]:
    if not isinstance(value, list) or len(value) != 4:
        raise SpecError(where, "four points [x, y]")
    points: list[Point] = []
    for i, p in enumerate(value):
        if bounds is None:
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                raise SpecError(f"{where}[{i}]", "a point is [x, y]")
            points.append((_number(p[0], f"{where}[{i}]"), _number(p[1], f"{where}[{i}]")))
        else:
            points.append(_point(p, f"{where}[{i}]", *bounds))
    for i in range(4):
        for j in range(i + 1, 4):
            for k in range(j + 1, 4):
                (ax, ay), (bx, by), (cx, cy) = points[i], points[j], points[k]
                twice_area = abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))
                scale = max(abs(bx - ax), abs(by - ay), abs(cx - ax), abs(cy - ay), 1e-12)
                if twice_area <= 1e-9 * scale * scale:
                    raise SpecError(where, f"points {i}, {j} and {k} are on one line")
    return points[0], points[1], points[2], points[3]


def _calibration(value: Any, width: int, height: int) -> Calibration | None:
    if value is None:
        return None
    body = _mapping(value, "calibration", CALIBRATION_KEYS)
    image = _four(body.get("image"), "calibration.image", (width, height))
    world = _four(body.get("world"), "calibration.world", None)
    calibration = Calibration(image, world)
    if not np.isfinite(calibration.matrix()).all():
        raise SpecError("calibration", "the four point pairs give no perspective transform")
    return calibration


def parse_spec(value: Any, width: int, height: int, duration: float | None = None) -> AnalyticsSpec:
    """Check a spec sent as JSON against a ``width`` x ``height`` frame (and, when known,
    a job of ``duration`` seconds, for the number of intervals) and fill in its defaults.

    Raises:
        SpecError: the first bad field, named.
    """
    body = _mapping(value, "", SPEC_KEYS)
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise SpecError("name", "a string of at most 200 characters")
    anchor = body.get("anchor", "bottom_center")
    if anchor not in ANCHORS:
        raise SpecError("anchor", f"one of {', '.join(ANCHORS)}")
    interval = _number(body.get("interval", DEFAULT_INTERVAL), "interval")
    if interval <= 0:
        raise SpecError("interval", "seconds, more than 0")
    if duration is not None and duration / interval >= MAX_INTERVALS:
        raise SpecError("interval", f"{interval:g} s makes more than {MAX_INTERVALS} intervals of the job")
    min_dwell = _number(body.get("min_dwell", 0.0), "min_dwell")
    if min_dwell < 0:
        raise SpecError("min_dwell", "seconds, 0 or more")
    default_hysteresis = round(DEFAULT_HYSTERESIS_OF_DIAGONAL * math.hypot(width, height), 2)
    hysteresis = _number(body.get("hysteresis", default_hysteresis), "hysteresis")
    if hysteresis < 0 or hysteresis > max(width, height):
        raise SpecError("hysteresis", "pixels, from 0 to the frame's size")
    zone_names: set[str] = set()
    line_names: set[str] = set()
    zones = tuple(
        _zone(z, f"zones[{i}]", width, height, zone_names)
        for i, z in enumerate(_list(body.get("zones", []), "zones", MAX_ZONES))
    )
    lines = tuple(
        _line(ln, f"lines[{i}]", width, height, line_names)
        for i, ln in enumerate(_list(body.get("lines", []), "lines", MAX_LINES))
    )
    return AnalyticsSpec(
        width=width,
        height=height,
        name=name,
        anchor=anchor,
        interval=interval,
        min_dwell=min_dwell,
        hysteresis=hysteresis,
        zones=zones,
        lines=lines,
        calibration=_calibration(body.get("calibration"), width, height),
    )


__all__ = [
    "ANCHORS",
    "AnalyticsSpec",
    "Calibration",
    "ClassFilter",
    "Line",
    "SpecError",
    "Zone",
    "parse_spec",
]
