"""An analytics' zones, lines and running counts as an `Overlay` for each frame of an
annotated video (detector.render)."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from detector.analytics.spec import AnalyticsSpec
from detector.render import Overlay

# The arrow towards a line's in side: this fraction of the frame's shorter side.
ARROW_OF_FRAME = 0.05


def _arrow_tip(
    a: tuple[float, float], b: tuple[float, float], inside: str, length: float
) -> tuple[float, float]:
    """The tip of an arrow from the line's middle towards its ``inside`` side (y down:
    left of a->b is the side where dx * (y - ay) - dy * (x - ax) < 0)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    norm = math.hypot(dx, dy)
    # (dy, -dx) points to the left side in image coordinates.
    nx, ny = (dy / norm, -dx / norm) if inside == "left" else (-dy / norm, dx / norm)
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    return mx + nx * length, my + ny * length


def overlay_for(spec: AnalyticsSpec, results: dict[str, Any]) -> Callable[[int], Overlay]:
    """The overlay of each video frame: the spec's zones and lines, and each rule's counts
    from its events at or before that frame (a line's in and out, a zone's visitors
    inside now and entries so far)."""
    length = ARROW_OF_FRAME * min(spec.width, spec.height)
    zones = tuple((z.name, z.polygon) for z in spec.zones)
    lines = tuple(
        (ln.name, ln.points[0], ln.points[1], _arrow_tip(*ln.points, ln.inside, length)) for ln in spec.lines
    )
    frames: dict[tuple[str, str, str], list[int]] = {}
    for ev in results["events"]:
        key = (ev["kind"], ev["rule"], ev["direction"] or ev["event"])
        frames.setdefault(key, []).append(int(ev["frame"]))
    for found in frames.values():
        found.sort()

    def upto(kind: str, rule: str, what: str, frame: int) -> int:
        return bisect_right(frames.get((kind, rule, what), []), frame)

    def at(frame: int) -> Overlay:
        text = [
            f"{ln.name}: in {upto('line', ln.name, 'in', frame)} out {upto('line', ln.name, 'out', frame)}"
            for ln in spec.lines
        ]
        for z in spec.zones:
            entered = upto("zone", z.name, "enter", frame)
            inside = entered - upto("zone", z.name, "exit", frame)
            text.append(f"{z.name}: {inside} inside, {entered} entered")
        return Overlay(zones=zones, lines=lines, text=tuple(text))

    return at
