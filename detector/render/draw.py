"""Draw detections on a frame: a box, a label and a score each, in stable colours.

Frames are drawn on either as BGR images (`draw_objects`) or, as the renderer
does, straight on the Y, U and V planes of a yuv420p frame (`draw_objects_yuv420p`),
so that the pixels around the boxes keep the values they were decoded with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from detector.detection.detections import Detections

Color = tuple[int, int, int]

# Twenty colours that are easy to tell apart on video (blue, green, red order, as
# OpenCV draws on BGR images). Class ``c`` is drawn in ``PALETTE[c % 20]``; a
# track in the colour its id hashes to.
PALETTE: tuple[Color, ...] = (
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
    (147, 69, 52),
    (255, 115, 100),
    (236, 24, 0),
    (255, 56, 132),
    (133, 0, 82),
    (255, 56, 203),
    (200, 149, 255),
    (199, 55, 255),
)

# Labels longer than this are cut (a model's label or a user's is data, not layout).
MAX_LABEL_CHARS = 40

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK: Color = (0, 0, 0)
_WHITE: Color = (255, 255, 255)


@dataclass(frozen=True)
class Style:
    """Line thickness and font size for one frame size."""

    thickness: int
    font_scale: float
    font_thickness: int

    @classmethod
    def for_size(cls, width: int, height: int) -> Style:
        """Lines about 1/200 of the frame's shorter side (2 pixels at 360p, 5 at
        1080p), text about 1/900 of it in OpenCV's font scale."""
        short = min(width, height)
        thickness = max(2, round(short / 200))
        return cls(
            thickness=thickness,
            font_scale=max(0.35, short / 900),
            font_thickness=max(1, thickness // 2),
        )


def object_color(class_id: int, track_id: int | None = None) -> Color:
    """The colour (BGR) of one detection: its track's when it is tracked, else its class's.

    Track ids are hashed (Knuth's multiplicative hash) so that consecutive ids get
    unrelated colours; class ids index the palette directly.
    """
    if track_id is not None:
        return PALETTE[((track_id * 2654435761) & 0xFFFFFFFF) % len(PALETTE)]
    return PALETTE[class_id % len(PALETTE)]


def label_text(label: str, score: float | None = None, track_id: int | None = None) -> str:
    """``person 0.97``, and `` #12`` after it for a tracked detection.

    OpenCV's font has printable ASCII only: anything else is drawn as ``?``.
    A score that is not a finite number is left out.
    """
    label = str(label)[:MAX_LABEL_CHARS]
    parts = ["".join(ch if " " <= ch <= "~" else "?" for ch in label)] if label else []
    if score is not None and math.isfinite(score):
        parts.append(f"{score:.2f}")
    if track_id is not None:
        parts.append(f"#{track_id}")
    return " ".join(parts)


@dataclass(frozen=True)
class _Mark:
    """One thing to paint: a box outline, a filled label band, or label text."""

    kind: Literal["box", "band", "text"]
    color: Color
    p1: tuple[int, int]  # top left; the text's origin (bottom left)
    p2: tuple[int, int] = (0, 0)  # bottom right
    text: str = ""


def _layout(found: Detections, width: int, height: int, style: Style) -> list[_Mark]:
    """The marks for ``found`` on a frame of this size: every box first, then
    every label, so that no box crosses a label. Boxes with a corner that is not
    a finite number, and boxes outside the frame, are left out."""
    pixels, shown = _pixel_boxes(found.xyxy, width, height)
    classes, labels, scores = found.class_id.tolist(), found.label.tolist(), found.score.tolist()
    track_ids = found.track_ids()
    boxes: list[_Mark] = []
    texts: list[_Mark] = []
    for i in np.flatnonzero(shown).tolist():
        color = object_color(classes[i], track_ids[i])
        x1, y1, x2, y2 = pixels[i]
        boxes.append(_Mark("box", color, (x1, y1), (x2, y2)))
        text = label_text(labels[i], scores[i], track_ids[i])
        if text:
            texts += _label(text, x1, y1, color, width, height, style)
    return boxes + texts


def _pixel_boxes(
    xyxy: npt.NDArray[np.float64], width: int, height: int
) -> tuple[list[list[int]], npt.NDArray[np.bool_]]:
    """Each box in whole pixels, corners in order, clipped to the frame; and which
    boxes to draw: those whose corners are finite numbers and that touch the frame."""
    finite = np.asarray(np.isfinite(xyxy).all(axis=1))
    boxes = np.where(finite[:, None], xyxy, 0.0)
    x1, x2 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    y1, y2 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    shown = finite & (x2 >= 0) & (y2 >= 0) & (x1 <= width - 1) & (y1 <= height - 1)
    limits = np.array([width - 1, height - 1, width - 1, height - 1], dtype=np.float64)
    clipped = np.minimum(np.maximum(np.stack([x1, y1, x2, y2], axis=1), 0.0), limits)
    return np.rint(clipped).astype(np.int64).tolist(), shown


def _label(text: str, x: int, y: int, color: Color, width: int, height: int, style: Style) -> list[_Mark]:
    """A band in the box's colour just above the box (just inside its top edge when
    there is no room above), with the text on it in black or white."""
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
    pad = max(1, style.thickness // 2 + 1)
    band_h = text_h + baseline + 2 * pad
    band_w = text_w + 2 * pad
    top = y - band_h if y - band_h >= 0 else y
    left = max(0, min(x, width - band_w))
    band = _Mark("band", color, (left, top), (min(width - 1, left + band_w), min(height - 1, top + band_h)))
    b, g, r = color
    ink = _BLACK if 0.114 * b + 0.587 * g + 0.299 * r > 140 else _WHITE
    return [band, _Mark("text", ink, (left + pad, top + pad + text_h), text=text)]


def _paint(
    image: np.ndarray,
    marks: Sequence[_Mark],
    style: Style,
    value: Callable[[Color], Any],
    scale: int = 1,
) -> None:
    """Paint ``marks`` on ``image``, which is ``1/scale`` the size they were laid out
    for (2: a chroma plane), in the values ``value`` gives for each colour."""

    def at(point: tuple[int, int]) -> tuple[int, int]:
        return point[0] // scale, point[1] // scale

    thickness = max(1, round(style.thickness / scale))
    font_thickness = max(1, round(style.font_thickness / scale))
    for mark in marks:
        if mark.kind == "box":
            cv2.rectangle(image, at(mark.p1), at(mark.p2), value(mark.color), thickness, cv2.LINE_AA)
        elif mark.kind == "band":
            cv2.rectangle(image, at(mark.p1), at(mark.p2), value(mark.color), cv2.FILLED)
        else:
            cv2.putText(
                image,
                mark.text,
                at(mark.p1),
                _FONT,
                style.font_scale / scale,
                value(mark.color),
                font_thickness,
                cv2.LINE_AA,
            )


def draw_objects(image: np.ndarray, found: Detections, style: Style | None = None) -> int:
    """Draw each detection's box and label on ``image`` (a BGR ``uint8`` array, in place).

    Boxes are ``[x1, y1, x2, y2]`` in the image's pixels and are clipped to it; a
    box with a corner that is not a finite number is skipped. Returns how many
    boxes were drawn.
    """
    height, width = image.shape[:2]
    style = style or Style.for_size(width, height)
    marks = _layout(found, width, height, style)
    _paint(image, marks, style, lambda color: color)
    return sum(mark.kind == "box" for mark in marks)


def draw_objects_yuv420p(
    y: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    found: Detections,
    style: Style | None = None,
    colorspace: int = 2,
) -> int:
    """Draw like `draw_objects`, on the planes of a limited-range yuv420p frame (in place).

    ``u`` and ``v`` are half the size of ``y`` (rounded up); ``colorspace`` is the
    frame's matrix as FFmpeg numbers it (1: BT.709; 9 and 10: BT.2020; anything
    else: BT.601), so that a colour looks the same as on a BGR image decoded from it.
    """
    height, width = y.shape[:2]
    style = style or Style.for_size(width, height)
    marks = _layout(found, width, height, style)
    if marks:
        cache: dict[Color, tuple[int, int, int]] = {}

        def yuv(color: Color) -> tuple[int, int, int]:
            if color not in cache:
                cache[color] = to_yuv(color, colorspace)
            return cache[color]

        _paint(y, marks, style, lambda color: yuv(color)[0])
        _paint(u, marks, style, lambda color: yuv(color)[1], scale=2)
        _paint(v, marks, style, lambda color: yuv(color)[2], scale=2)
    return sum(mark.kind == "box" for mark in marks)


# FFmpeg's colour matrices (AVColorSpace) -> (Kr, Kb); BT.601 for any other.
_MATRICES = {
    1: (0.2126, 0.0722),
    4: (0.30, 0.11),
    7: (0.212, 0.087),
    9: (0.2627, 0.0593),
    10: (0.2627, 0.0593),
}


def to_yuv(color: Color, colorspace: int = 2) -> tuple[int, int, int]:
    """A BGR colour as limited-range (video) Y, U, V values in ``colorspace``'s matrix."""
    kr, kb = _MATRICES.get(colorspace, (0.299, 0.114))
    b, g, r = (c / 255 for c in color)
    luma = kr * r + (1 - kr - kb) * g + kb * b
    y = 16 + 219 * luma
    u = 128 + 224 * (b - luma) / (2 * (1 - kb))
    v = 128 + 224 * (r - luma) / (2 * (1 - kr))
    return tuple(min(255, max(0, round(c))) for c in (y, u, v))  # type: ignore[return-value]


Point = tuple[float, float]

# The colours (BGR) of an overlay's zones and lines.
ZONE_COLOR: Color = (0, 215, 255)
LINE_COLOR: Color = (255, 0, 255)


@dataclass(frozen=True)
class Overlay:
    """What a render draws over a frame besides its detections (analytics): outlined
    zones, lines with an arrow towards their ``in`` side, each named, and lines of
    text in the top-left corner. Points are in pixels of the stored frame."""

    zones: tuple[tuple[str, tuple[Point, ...]], ...] = ()
    lines: tuple[tuple[str, Point, Point, Point], ...] = ()  # name, ends, the arrow's tip
    text: tuple[str, ...] = ()


def _overlay_marks(overlay: Overlay, width: int, height: int, style: Style) -> list[_Mark]:
    """The overlay's names and text as label bands (the shapes are drawn apart)."""
    marks: list[_Mark] = []
    for name, points in overlay.zones:
        x, y = min(points, key=lambda p: (p[1], p[0]))
        marks += _label(label_text(name), round(x), round(y), ZONE_COLOR, width, height, style)
    for name, a, _, _ in overlay.lines:
        marks += _label(label_text(name), round(a[0]), round(a[1]), LINE_COLOR, width, height, style)
    top = 0
    for line in overlay.text:
        text = label_text(line)
        (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
        pad = max(1, style.thickness // 2 + 1)
        bottom = min(height - 1, top + text_h + baseline + 2 * pad)
        marks.append(_Mark("band", _BLACK, (0, top), (min(width - 1, text_w + 2 * pad), bottom)))
        marks.append(_Mark("text", _WHITE, (pad, top + pad + text_h), text=text))
        top = bottom + 1
    return marks


def _paint_shapes(
    image: np.ndarray, overlay: Overlay, style: Style, value: Callable[[Color], Any], scale: int = 1
) -> None:
    thickness = max(1, round(style.thickness / scale))

    def pts(points: Sequence[Point]) -> np.ndarray:
        return np.rint(np.asarray(points, dtype=np.float64) / scale).astype(np.int32).reshape(-1, 1, 2)

    for _, polygon in overlay.zones:
        cv2.polylines(image, [pts(polygon)], True, value(ZONE_COLOR), thickness, cv2.LINE_AA)
    for _, a, b, tip in overlay.lines:
        cv2.polylines(image, [pts([a, b])], False, value(LINE_COLOR), thickness, cv2.LINE_AA)
        middle = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
        start, end = pts([middle, tip]).reshape(2, 2).tolist()
        cv2.arrowedLine(image, tuple(start), tuple(end), value(LINE_COLOR), thickness, cv2.LINE_AA, 0, 0.3)


def draw_overlay(image: np.ndarray, overlay: Overlay, style: Style | None = None) -> None:
    """Draw ``overlay`` on ``image`` (a BGR ``uint8`` array, in place)."""
    height, width = image.shape[:2]
    style = style or Style.for_size(width, height)
    _paint_shapes(image, overlay, style, lambda color: color)
    _paint(image, _overlay_marks(overlay, width, height, style), style, lambda color: color)


def draw_overlay_yuv420p(
    y: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    overlay: Overlay,
    style: Style | None = None,
    colorspace: int = 2,
) -> None:
    """Draw like `draw_overlay`, on the planes of a limited-range yuv420p frame (in place)."""
    height, width = y.shape[:2]
    style = style or Style.for_size(width, height)
    marks = _overlay_marks(overlay, width, height, style)
    for plane, channel, scale in ((y, 0, 1), (u, 1, 2), (v, 2, 2)):

        def value(color: Color, channel: int = channel) -> int:
            return to_yuv(color, colorspace)[channel]

        _paint_shapes(plane, overlay, style, value, scale)
        _paint(plane, marks, style, value, scale)
