"""Synthetic tracked frames of known geometry: each track a list of anchor positions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detector.analytics import Analysis, analyse_frames, parse_spec
from detector.detection import AnalysedFrame, Detections

WIDTH, HEIGHT = 400, 300
# Box size around each anchor (its bottom centre is the anchor).
BOX_W, BOX_H = 10.0, 30.0


def box_at(x: float, y: float) -> list[float]:
    """A box whose bottom centre is (x, y)."""
    return [x - BOX_W / 2, y - BOX_H, x + BOX_W / 2, y]


def tracked_frames(
    tracks: Mapping[int, Mapping[int, tuple[float, float]]],
    frames: Sequence[int],
    fps: float = 10.0,
    labels: Mapping[int, str] | None = None,
) -> list[AnalysedFrame]:
    """The analysed ``frames`` (indices, timestamps index / fps) with each track's object
    where ``tracks[track][frame]`` puts its anchor (bottom centre)."""
    out = []
    for f in frames:
        objects: list[dict[str, Any]] = []
        for track, where in tracks.items():
            if f in where:
                label = (labels or {}).get(track, "person")
                objects.append(
                    {"label": label, "class_id": 1, "score": 0.9, "box": box_at(*where[f]), "track_id": track}
                )
        out.append(AnalysedFrame(f, f / fps, Detections.from_objects(objects)))
    return out


def run(
    spec: dict[str, Any], frames: list[AnalysedFrame], width: int = WIDTH, height: int = HEIGHT
) -> Analysis:
    return analyse_frames(parse_spec(spec, width, height), frames)


def path(points: Mapping[int, tuple[float, float]]) -> dict[int, tuple[float, float]]:
    return dict(points)


def straight(
    frames: Sequence[int], start: tuple[float, float], step: tuple[float, float]
) -> dict[int, tuple[float, float]]:
    """A track at ``start`` on ``frames[0]``, moving ``step`` pixels per frame index."""
    f0 = frames[0]
    return {f: (start[0] + step[0] * (f - f0), start[1] + step[1] * (f - f0)) for f in frames}
