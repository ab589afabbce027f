"""Track thumbnails: each track's best-scoring box, cut from its frame as a small JPEG.

Each track's best box (its frame and box, a few numbers per track) is kept by the
tracker with the track, or gathered by `BestBoxes`. `make_thumbnails` decodes
only those frames, in frame order, forward through the video: frames close
together are decoded in one run, and the decoder seeks (to the keyframe before a
frame) only across a longer gap, so the frames decoded grow with the number of
tracks, never past the video's own frames.

A pure library: nothing here knows about Flask, Celery or the database.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from detector.video.decode import DecodeStats, decode_frames
from detector.video.probe import VideoSource

#: A thumbnail's longest side in pixels at most (smaller boxes are not enlarged).
THUMBNAIL_SIZE = 128
JPEG_QUALITY = 80
#: Frames between two wanted frames up to which one run decodes on rather than seeking.
RUN_GAP = 60

# Display rotation (degrees counter-clockwise, as the video's probe reports it) -> the
# turn that makes stored pixels upright.
_ROTATE = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


@dataclass(frozen=True)
class BestBox:
    """A track's best-scoring object: the frame (index) it is in, its box
    ``[x1, y1, x2, y2]`` in pixels of the stored frame and its score."""

    frame: int
    box: tuple[float, float, float, float]
    score: float


class BestBoxes:
    """Each track's best-scoring box so far, fed one tracked frame at a time.

    A higher score wins; between equal scores, the earlier frame.
    """

    def __init__(self, best: Mapping[int, BestBox] | None = None) -> None:
        self._best: dict[int, BestBox] = dict(best or {})

    def __len__(self) -> int:
        return len(self._best)

    def observe(self, frame: int, objects: Iterable[Mapping[str, Any]]) -> None:
        """Take one frame's objects in their JSON form (``track_id``, ``score``,
        ``box``); objects without a track id are left out."""
        best = self._best
        for obj in objects:
            track_id = obj.get("track_id")
            if track_id is None:
                continue
            score = float(obj["score"])
            kept = best.get(track_id)
            if kept is None or score > kept.score:
                x1, y1, x2, y2 = obj["box"]
                best[track_id] = BestBox(frame, (float(x1), float(y1), float(x2), float(y2)), score)

    def observe_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """`observe` each of ``rows``, frame rows ``{"index", "objects"}`` in frame order."""
        for row in rows:
            self.observe(row["index"], row["objects"])

    def items(self) -> list[tuple[int, BestBox]]:
        """(track id, best box) for every track, by frame, then track id."""
        return sorted(self._best.items(), key=lambda item: (item[1].frame, item[0]))

    def frames(self) -> list[int]:
        """The frames the thumbnails are cut from, each once, in order."""
        return sorted({best.frame for best in self._best.values()})


@dataclass(frozen=True)
class Thumbnail:
    """One track's thumbnail: the frame it was cut from and the JPEG's bytes."""

    track_id: int
    frame: int
    jpeg: bytes


def crop_box(
    image: np.ndarray, box: Sequence[float], *, rotation: int = 0, size: int = THUMBNAIL_SIZE
) -> np.ndarray:
    """The pixels of ``box`` (``[x1, y1, x2, y2]``, clipped to the image and at least one
    pixel each way) out of a BGR ``image``, turned upright for a video whose display
    ``rotation`` is a quarter turn, and scaled down (keeping its shape) so that its
    longest side is at most ``size`` pixels."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) if math.isfinite(v) else 0.0 for v in box)
    left = min(max(0, math.floor(x1)), width - 1)
    top = min(max(0, math.floor(y1)), height - 1)
    right = max(left + 1, min(width, math.ceil(x2)))
    bottom = max(top + 1, min(height, math.ceil(y2)))
    crop = image[top:bottom, left:right]
    turn = _ROTATE.get((round(rotation / 90) * 90) % 360)
    if turn is not None:
        crop = cv2.rotate(crop, turn)
    longest = max(crop.shape[:2])
    if longest > size:
        scale = size / longest
        shape = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, shape, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """A BGR image as JPEG bytes."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the image could not be encoded as JPEG")
    return bytes(encoded.tobytes())


def _runs(frames: list[int], gap: int) -> list[list[int]]:
    """``frames`` (ascending) cut where two follow each other by more than ``gap``."""
    runs: list[list[int]] = []
    for frame in frames:
        if runs and frame - runs[-1][-1] <= gap:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs


def make_thumbnails(
    path: VideoSource,
    boxes: BestBoxes,
    frame_pts: Mapping[int, int],
    *,
    rotation: int = 0,
    size: int = THUMBNAIL_SIZE,
    quality: int = JPEG_QUALITY,
    gap: int = RUN_GAP,
    stats: DecodeStats | None = None,
) -> Iterator[Thumbnail]:
    """The thumbnail of every track in ``boxes``, decoded from the video at ``path``, in
    frame order. ``frame_pts`` gives each wanted frame's presentation timestamp in the
    stream's time base (as the job's chunk plans do); a track whose frame has none is
    left out. ``stats`` counts the frames decoded.

    Raises:
        detector.video.VideoError: a wanted frame could not be decoded.
    """
    stats = stats if stats is not None else DecodeStats()
    wanted: dict[int, list[tuple[int, BestBox]]] = {}
    for track_id, best in boxes.items():
        if best.frame in frame_pts:
            wanted.setdefault(best.frame, []).append((track_id, best))
    for run in _runs(sorted(wanted), gap):
        pts = [frame_pts[frame] for frame in run]
        for frame, image in zip(run, decode_frames(path, pts[0], pts, stats), strict=True):
            for track_id, best in wanted[frame]:
                crop = crop_box(image, best.box, rotation=rotation, size=size)
                yield Thumbnail(track_id, frame, encode_jpeg(crop, quality))
