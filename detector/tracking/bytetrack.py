"""Give every detected object a track id that stays the same across a job's frames.

Tracking runs once over a job's stored detections, frame by frame in frame
order. Each object ``{"label", "class_id", "score", "box"}`` comes back as a
new dict with ``"track_id"`` (an int) added; a ``"track_id"`` already there
from an earlier run is overwritten, so tracking the same frames again gives
the same ids.

The tracker
-----------
The association is ByteTrack (Zhang et al., 2022) as shipped by Roboflow's
``supervision`` (MIT licence, pinned in pyproject.toml). ByteTrack predicts
each track's next box with a Kalman filter and matches boxes by overlap in two
passes: first the confident detections, then the low-score ones (occluded or
blurred objects the detector is unsure of) against the tracks still unmatched,
so a briefly uncertain object keeps its track instead of starting a new one.

supervision 0.31 removed its ByteTrack in favour of Roboflow's separate
``trackers`` package, which requires ``opencv-python`` and so clashes with
this project's ``opencv-python-headless``. 0.30.9 (October 2026) is the last
release with ByteTrack and the first line that runs without OpenCV. Its
ByteTrack is deprecated and warns (a FutureWarning) when built, which
`Tracker` silences for that one call.

One ByteTrack per class
-----------------------
Each ``class_id`` has its own ByteTrack, so a track never changes label (a
track's label is its first object's label). The ids a ByteTrack hands out are
its own, so they are mapped onto one job-wide sequence 1, 2, 3... in order of
first appearance (frame order, then the order of the objects within a frame).
ByteTrack has no randomness, so the same frames always get the same ids.

Every object gets an id
-----------------------
ByteTrack by itself reports only some of the boxes it is given:

- a box scoring 0.1 or less, or with a zero, negative or non-finite size, is
  dropped before matching;
- a box scoring below ``ACTIVATION_THRESHOLD`` only continues a track that is
  already being followed: it never starts one, nor picks up a lost one;
- a box that matches no track starts one only if it scores at least
  ``ACTIVATION_THRESHOLD + 0.1``;
- a new track (except on a tracker's first frame) is "unconfirmed" until a box
  matches it on the next frame, and is not reported until then: its first box
  would come back without an id, and if nothing matches it on the next frame
  it is discarded.

Rather than use ByteTrack's report (``update_with_detections``), `Tracker`
runs its ``update_with_tensors`` and reads which of its tracks, confirmed or
not, took a box on this frame, pairing those tracks with this frame's boxes by
overlap (each such track took exactly one of them, and sits almost exactly
on it). ByteTrack's own internal track number, which a track keeps from its
first box on, becomes the job-wide id. So an unconfirmed track's first box has
the id its later boxes will have, and an unconfirmed track that is never
confirmed is simply a track of one frame. Any box ByteTrack drops gets a new
id of its own: a track of one frame. A box scoring 0.35 or more (the
service's default score threshold is 0.5) always starts or continues a track.

Those attributes (``tracked_tracks``, ``frame_id``, ``internal_track_id``,
``state``, ``tlbr``) are ByteTrack's internals, not its documented interface:
the exact pin and tests/tracking keep them honest.

Frame rate and gaps
-------------------
ByteTrack counts frames, not seconds: a track not seen for more than its
lost-track buffer of frames is forgotten (one frame later than that, in
fact: it lets go of an expired track on the next frame). `Tracker` takes the
buffer in seconds and converts it to analysed frames with the job's frame
rate, which `frame_rate_of` works out from the analysed frames' real
timestamps. A job analysing 2 frames a second with a 2 s buffer keeps a lost
track for 4 analysed frames; ByteTrack's default of 30 frames (1 s of a
30 fps video) would keep it for 15 s.

The timestamps also tell how many analysed frames lie between two frames
given to `Tracker.update`: a frame missing from the input (one that failed to
decode, or a job that stores no empty frames) is stepped over as a frame in
which nothing was seen, so a lost track is forgotten after the same time
whether a gap was stored as empty frames or not. The frame rate must
therefore be that of the analysed frames, not of the video: at 30 fps, a job
sampled at 2 fps would seem to miss 14 frames between any two, and a new
track, which ByteTrack drops if the frame after its first does not confirm
it, would never last.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from supervision.tracker.byte_tracker.core import ByteTrack

DEFAULT_FRAME_RATE = 30.0
"""The frame rate `frame_rate_of` reports when the timestamps do not tell one."""

DEFAULT_BUFFER_SECONDS = 2.0
"""How long a track that is no longer seen is kept for the object to come back."""

ACTIVATION_THRESHOLD = 0.25
"""ByteTrack's score line between its two passes (supervision's default)."""

MATCHING_THRESHOLD = 0.8
"""ByteTrack's largest matching cost, one minus overlap times score, in its first pass
(supervision's default)."""

Frame = tuple[int, float, list[dict[str, Any]]]
"""One analysed frame: its index in the video, its timestamp in seconds and its objects."""


def frame_rate_of(timestamps: Sequence[float]) -> float:
    """The rate, in frames per second, at which ``timestamps`` (in seconds,
    ascending) were analysed: one over the median step between consecutive ones.

    The median ignores the odd long gap (a skipped range) or uneven step.
    Steps that are zero, negative or not finite are left out; with no step
    left (fewer than two timestamps, or all equal) it is `DEFAULT_FRAME_RATE`.
    """
    steps = [b - a for a, b in pairwise(timestamps) if b > a and math.isfinite(b - a)]
    if not steps:
        return DEFAULT_FRAME_RATE
    return 1.0 / statistics.median(steps)


@dataclass(frozen=True)
class TrackSummary:
    """One track over a job: its object's label and class, the first and last
    frame it was seen in (index and timestamp), in how many analysed frames it
    was seen and its objects' mean score."""

    track_id: int
    label: str
    class_id: int
    first_frame: int
    last_frame: int
    first_timestamp: float
    last_timestamp: float
    frames: int
    mean_score: float

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values."""
        return asdict(self)


@dataclass
class _TrackStats:
    """A track's summary as it builds up."""

    label: str
    class_id: int
    first_frame: int
    first_timestamp: float
    last_frame: int
    last_timestamp: float
    frames: int = 0
    score_sum: float = 0.0


def _byte_track(buffer_frames: int) -> ByteTrack:
    """A supervision ByteTrack that forgets a lost track after ``buffer_frames`` analysed frames."""
    from supervision.tracker.byte_tracker.core import ByteTrack

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*ByteTrack.*deprecated", category=FutureWarning)
        # ByteTrack keeps a lost track for int(frame_rate / 30 * lost_track_buffer)
        # frames; at 30 that is exactly buffer_frames, with no rounding down.
        tracker = ByteTrack(
            track_activation_threshold=ACTIVATION_THRESHOLD,
            lost_track_buffer=buffer_frames,
            minimum_matching_threshold=MATCHING_THRESHOLD,
            frame_rate=30,
            minimum_consecutive_frames=1,
        )
    assert tracker.max_time_lost == buffer_frames
    return tracker


def _iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The overlap (intersection over union) of every box in ``a`` with every box in ``b``."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2, dtype=np.float64)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1, dtype=np.float64)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1, dtype=np.float64)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class _ClassTracker:
    """One ByteTrack for the objects of one class."""

    def __init__(self, buffer_frames: int) -> None:
        self.byte_track = _byte_track(buffer_frames)

    @property
    def idle(self) -> bool:
        """Whether it follows no track, lost or not (so an empty frame changes nothing)."""
        return not self.byte_track.tracked_tracks and not self.byte_track.lost_tracks

    def step(self, tensors: npt.NDArray[np.float32]) -> list[int | None]:
        """Track one frame's boxes of this class, rows ``x1, y1, x2, y2, score``:
        for each row, the ByteTrack track number that took it, or None."""
        from scipy.optimize import linear_sum_assignment
        from supervision.tracker.byte_tracker.single_object_track import TrackState

        byte_track = self.byte_track
        byte_track.update_with_tensors(tensors)
        taken = [
            track
            for track in byte_track.tracked_tracks
            if track.frame_id == byte_track.frame_id and track.state == TrackState.Tracked
        ]
        numbers: list[int | None] = [None] * len(tensors)
        if not taken or not len(tensors):
            return numbers
        overlap = _iou(tensors[:, :4], np.asarray([track.tlbr for track in taken], dtype=np.float32))
        overlap[~np.isfinite(overlap)] = 0.0
        rows, columns = linear_sum_assignment(overlap, maximize=True)
        for row, column in zip(rows, columns, strict=True):
            if overlap[row, column] > 0:
                numbers[row] = int(taken[column].internal_track_id)
        return numbers


class Tracker:
    """Track one job's objects, one analysed frame at a time in frame order.

    ``frame_rate`` is the rate of the analysed frames (see `frame_rate_of`),
    not of the video; ``buffer_seconds`` is how long a track that is no longer
    seen is kept for its object to come back, converted to analysed frames
    with ``frame_rate`` (at least one).
    """

    def __init__(self, frame_rate: float, *, buffer_seconds: float = DEFAULT_BUFFER_SECONDS) -> None:
        if not (math.isfinite(frame_rate) and frame_rate > 0):
            raise ValueError(f"frame_rate must be a positive number, not {frame_rate!r}")
        if not (math.isfinite(buffer_seconds) and buffer_seconds >= 0):
            raise ValueError(f"buffer_seconds must be zero or more, not {buffer_seconds!r}")
        self.frame_rate = float(frame_rate)
        self.buffer_seconds = float(buffer_seconds)
        self.buffer_frames = max(1, round(buffer_seconds * frame_rate))
        self._classes: dict[int, _ClassTracker] = {}
        self._ids: dict[tuple[int, int], int] = {}
        self._stats: dict[int, _TrackStats] = {}
        self._last: tuple[int, float] | None = None

    def _new_id(self) -> int:
        return len(self._stats) + 1

    def _skip(self, timestamp: float) -> None:
        """Step the trackers over the analysed frames missing before ``timestamp``,
        as frames in which nothing was seen. ByteTrack lets go of a track one frame
        after it expires, so buffer + 2 empty frames forget every lost track: more
        would change nothing."""
        if self._last is None:
            return
        steps = round((timestamp - self._last[1]) * self.frame_rate)
        empty = np.empty((0, 5), dtype=np.float32)
        for _ in range(min(steps - 1, self.buffer_frames + 2)):
            for tracker in self._classes.values():
                if not tracker.idle:
                    tracker.step(empty)

    def update(self, frame: int, timestamp: float, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Track the objects of the analysed frame ``frame`` (index in the video)
        at ``timestamp`` seconds: new dicts, in the same order, each with
        ``"track_id"`` set. Frames must come in ascending order."""
        if self._last is not None and frame <= self._last[0]:
            raise ValueError(f"frames must come in ascending order: {frame} after {self._last[0]}")
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be a finite number, not {timestamp!r}")
        self._skip(timestamp)
        self._last = (frame, timestamp)

        by_class: dict[int, list[int]] = {}
        for position, obj in enumerate(objects):
            by_class.setdefault(int(obj["class_id"]), []).append(position)
        for class_id in by_class:
            if class_id not in self._classes:
                self._classes[class_id] = _ClassTracker(self.buffer_frames)

        numbers: list[int | None] = [None] * len(objects)
        for class_id, tracker in self._classes.items():
            positions = by_class.get(class_id, [])
            if not positions and tracker.idle:
                continue
            tensors = np.asarray(
                [[*map(float, objects[p]["box"]), float(objects[p]["score"])] for p in positions],
                dtype=np.float32,
            ).reshape(-1, 5)
            for position, number in zip(positions, tracker.step(tensors), strict=True):
                numbers[position] = number

        tracked = []
        for obj, number in zip(objects, numbers, strict=True):
            class_id = int(obj["class_id"])
            if number is None:
                track_id = self._new_id()
            else:
                track_id = self._ids.setdefault((class_id, number), self._new_id())
            self._record(track_id, frame, timestamp, obj)
            tracked.append({**obj, "track_id": track_id})
        return tracked

    def _record(self, track_id: int, frame: int, timestamp: float, obj: dict[str, Any]) -> None:
        stats = self._stats.get(track_id)
        if stats is None:
            stats = self._stats[track_id] = _TrackStats(
                label=str(obj["label"]),
                class_id=int(obj["class_id"]),
                first_frame=frame,
                first_timestamp=timestamp,
                last_frame=frame,
                last_timestamp=timestamp,
            )
        stats.last_frame = frame
        stats.last_timestamp = timestamp
        stats.frames += 1
        stats.score_sum += float(obj["score"])

    def summaries(self) -> list[TrackSummary]:
        """Every track so far, by track id."""
        return [
            TrackSummary(
                track_id=track_id,
                label=stats.label,
                class_id=stats.class_id,
                first_frame=stats.first_frame,
                last_frame=stats.last_frame,
                first_timestamp=stats.first_timestamp,
                last_timestamp=stats.last_timestamp,
                frames=stats.frames,
                mean_score=stats.score_sum / stats.frames,
            )
            for track_id, stats in sorted(self._stats.items())
        ]


class TrackedFrames(Iterator[Frame]):
    """``frames`` with track ids, tracked lazily, one frame as it is asked for.

    Iterate it to get each frame as ``(frame, timestamp, objects)``; once it is
    exhausted, `summaries` describes every track (before then, those so far).
    """

    def __init__(self, frames: Iterable[Frame], tracker: Tracker) -> None:
        self._frames = iter(frames)
        self.tracker = tracker

    def __next__(self) -> Frame:
        frame, timestamp, objects = next(self._frames)
        return frame, timestamp, self.tracker.update(frame, timestamp, objects)

    def summaries(self) -> list[TrackSummary]:
        """Every track so far, by track id."""
        return self.tracker.summaries()


def track_frames(
    frames: Iterable[Frame], frame_rate: float, *, buffer_seconds: float = DEFAULT_BUFFER_SECONDS
) -> TrackedFrames:
    """Track a job's analysed ``frames`` (in frame order) with a new `Tracker`:
    an iterator over the same frames, objects with track ids, whose
    ``summaries()`` describes the tracks once it is exhausted."""
    return TrackedFrames(frames, Tracker(frame_rate, buffer_seconds=buffer_seconds))
