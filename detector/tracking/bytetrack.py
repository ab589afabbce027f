"""Give every detected object a track id that stays the same across a job's frames.

Tracking runs once over a job's stored detections, frame by frame in frame
order. Each frame's `Detections` come back as new `Detections` with a
``track_id`` for every object; track ids already there from an earlier run are
ignored and replaced, so tracking the same frames again gives the same ids.

The association is ByteTrack as shipped by ``supervision`` (pinned in
pyproject.toml), one ByteTrack per class, with ids mapped onto one job-wide
sequence in order of first appearance. `Tracker` reads which of ByteTrack's
tracks took a box on each frame instead of its report, so that every object
gets an id (ByteTrack alone reports only some boxes), and converts ByteTrack's
lost-track buffer from seconds to analysed frames with the frame rate of the
analysed frames (`frame_rate_of`). docs/tracking.md explains each choice.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from detector.detection.detections import AnalysedFrame, Detections

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


def frame_rate_of(timestamps: Sequence[float] | npt.NDArray[np.float64]) -> float:
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
    was seen, its objects' mean score, and its best-scoring object (the frame it
    is in, its score and its box ``[x1, y1, x2, y2]``: the track's thumbnail).
    Between equal scores the earlier object is the best."""

    track_id: int
    label: str
    class_id: int
    first_frame: int
    last_frame: int
    first_timestamp: float
    last_timestamp: float
    frames: int
    mean_score: float
    best_frame: int
    best_score: float
    best_box: list[float]

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values (a copy: the box is a new list)."""
        return {**vars(self), "best_box": list(self.best_box)}


@dataclass
class _TrackStats:
    """A track's summary as it builds up."""

    label: str
    class_id: int
    first_frame: int
    first_timestamp: float
    last_frame: int
    last_timestamp: float
    best_frame: int
    best_score: float
    best_box: list[float]
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
        # Track id of each (class, ByteTrack track number) that ByteTrack still follows.
        self._ids: dict[tuple[int, int], int] = {}
        # Tracks not yet handed over by `pop_finished`, by track id.
        self._stats: dict[int, _TrackStats] = {}
        # Ids given to objects no ByteTrack track took: those tracks end on their frame.
        self._single: list[int] = []
        self._issued = 0
        self._last: tuple[int, float] | None = None

    def _new_id(self) -> int:
        self._issued += 1
        return self._issued

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

    def update(self, frame: int, timestamp: float, detections: Detections) -> Detections:
        """Track the objects of the analysed frame ``frame`` (index in the video)
        at ``timestamp`` seconds: the same objects, in the same order, each with
        a track id. Frames must come in ascending order."""
        if self._last is not None and frame <= self._last[0]:
            raise ValueError(f"frames must come in ascending order: {frame} after {self._last[0]}")
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be a finite number, not {timestamp!r}")
        self._skip(timestamp)
        self._last = (frame, timestamp)

        classes = detections.class_id.tolist()
        for class_id in dict.fromkeys(classes):  # new trackers in order of first appearance
            if class_id not in self._classes:
                self._classes[class_id] = _ClassTracker(self.buffer_frames)

        # Rows x1, y1, x2, y2, score, as ByteTrack takes them.
        rows = np.concatenate([detections.xyxy, detections.score[:, None]], axis=1).astype(np.float32)
        numbers: list[int | None] = [None] * len(classes)
        for class_id, tracker in self._classes.items():
            positions = np.flatnonzero(detections.class_id == class_id)
            if not len(positions) and tracker.idle:
                continue
            for position, number in zip(positions.tolist(), tracker.step(rows[positions]), strict=True):
                numbers[position] = number

        track_ids = []
        labels, scores, boxes = detections.label.tolist(), detections.score.tolist(), detections.xyxy.tolist()
        for class_id, number, label, score, box in zip(classes, numbers, labels, scores, boxes, strict=True):
            known = None if number is None else self._ids.get((class_id, number))
            track_id = known if known is not None else self._new_id()
            if number is None:
                self._single.append(track_id)
            elif known is None:
                self._ids[(class_id, number)] = track_id
            self._record(track_id, frame, timestamp, label, class_id, score, box)
            track_ids.append(track_id)
        return detections.with_track_ids(track_ids)

    def _record(
        self,
        track_id: int,
        frame: int,
        timestamp: float,
        label: str,
        class_id: int,
        score: float,
        box: list[float],
    ) -> None:
        stats = self._stats.get(track_id)
        if stats is None:
            stats = self._stats[track_id] = _TrackStats(
                label=str(label),
                class_id=class_id,
                first_frame=frame,
                first_timestamp=timestamp,
                last_frame=frame,
                last_timestamp=timestamp,
                best_frame=frame,
                best_score=score,
                best_box=box,
            )
        elif score > stats.best_score:
            stats.best_frame, stats.best_score, stats.best_box = frame, score, box
        stats.last_frame = frame
        stats.last_timestamp = timestamp
        stats.frames += 1
        stats.score_sum += score

    def summaries(self) -> list[TrackSummary]:
        """Every track so far that `pop_finished` has not handed over, by track id."""
        return [_summary(track_id, stats) for track_id, stats in sorted(self._stats.items())]

    def pop_finished(self) -> list[TrackSummary]:
        """The tracks that can take no more objects, by track id, handed over and
        forgotten: those whose ByteTrack track was let go (lost for longer than the
        buffer) and those of objects no ByteTrack track took. Called between frames,
        it keeps the tracker's memory to the tracks still followed, however long the
        video; `summaries` then holds only those."""
        followed = {
            (class_id, int(track.internal_track_id))
            for class_id, tracker in self._classes.items()
            for track in (*tracker.byte_track.tracked_tracks, *tracker.byte_track.lost_tracks)
        }
        finished = self._single
        self._single = []
        for key in [key for key in self._ids if key not in followed]:
            finished.append(self._ids.pop(key))
        return [_summary(track_id, self._stats.pop(track_id)) for track_id in sorted(finished)]


def _summary(track_id: int, stats: _TrackStats) -> TrackSummary:
    return TrackSummary(
        track_id=track_id,
        label=stats.label,
        class_id=stats.class_id,
        first_frame=stats.first_frame,
        last_frame=stats.last_frame,
        first_timestamp=stats.first_timestamp,
        last_timestamp=stats.last_timestamp,
        frames=stats.frames,
        mean_score=stats.score_sum / stats.frames,
        best_frame=stats.best_frame,
        best_score=stats.best_score,
        best_box=stats.best_box,
    )


class TrackedFrames(Iterator[AnalysedFrame]):
    """``frames`` with track ids, tracked lazily, one frame as it is asked for.

    Iterate it to get each `AnalysedFrame` with its objects' track ids; once it
    is exhausted, `summaries` describes every track (before then, those so far).
    """

    def __init__(self, frames: Iterable[AnalysedFrame], tracker: Tracker) -> None:
        self._frames = iter(frames)
        self.tracker = tracker

    def __next__(self) -> AnalysedFrame:
        frame = next(self._frames)
        return frame._replace(detections=self.tracker.update(frame.frame, frame.timestamp, frame.detections))

    def summaries(self) -> list[TrackSummary]:
        """Every track so far, by track id."""
        return self.tracker.summaries()


def track_frames(
    frames: Iterable[AnalysedFrame], frame_rate: float, *, buffer_seconds: float = DEFAULT_BUFFER_SECONDS
) -> TrackedFrames:
    """Track a job's analysed ``frames`` (in frame order) with a new `Tracker`:
    an iterator over the same frames, objects with track ids, whose
    ``summaries()`` describes the tracks once it is exhausted."""
    return TrackedFrames(frames, Tracker(frame_rate, buffer_seconds=buffer_seconds))
