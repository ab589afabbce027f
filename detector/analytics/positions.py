"""The anchor positions of a job's tracked objects, gathered frame by frame into flat
arrays sorted by track and frame, and the heatmap's counts of every object's anchor.

`PositionCollector` takes a job's analysed frames in frame order (the pipeline
reads them from the database, ``detector predict`` has them in memory) and
`PositionCollector.finish` hands back `Positions`: what `detector.analytics.engine`
works on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.detection import AnalysedFrame, Detections
from detector.detection.detections import NO_TRACK

# The heatmap's grid has at most this many cells along the frame's longer side.
HEATMAP_CELLS = 256


def anchor_points(xyxy: npt.NDArray[np.float64], anchor: str) -> tuple[npt.NDArray[np.float64], ...]:
    """The ``anchor`` point (x, y arrays) of each box ``[x1, y1, x2, y2]``."""
    x1, y1, x2, y2 = xyxy[:, 0], xyxy[:, 1], xyxy[:, 2], xyxy[:, 3]
    vertical, horizontal = anchor.split("_") if anchor != "center" else ("center", "center")
    x = {"left": x1, "right": x2, "center": (x1 + x2) / 2}[horizontal]
    y = {"top": y1, "bottom": y2, "center": (y1 + y2) / 2}[vertical]
    return x, y


@dataclass(frozen=True)
class Heatmap:
    """Counts of object anchors per ``cell`` x ``cell`` pixel square of a ``width`` x
    ``height`` frame (``counts``: rows x columns)."""

    width: int
    height: int
    cell: int
    counts: npt.NDArray[np.int64]

    @classmethod
    def empty(cls, width: int, height: int) -> Heatmap:
        cell = max(1, math.ceil(max(width, height) / HEATMAP_CELLS))
        rows, cols = max(1, math.ceil(height / cell)), max(1, math.ceil(width / cell))
        return cls(width, height, cell, np.zeros((rows, cols), dtype=np.int64))

    def add(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> None:
        finite = np.isfinite(x) & np.isfinite(y)
        rows, cols = self.counts.shape
        r = np.clip((y[finite] // self.cell).astype(np.int64), 0, rows - 1)
        c = np.clip((x[finite] // self.cell).astype(np.int64), 0, cols - 1)
        np.add.at(self.counts, (r, c), 1)

    def as_json(self) -> dict[str, object]:
        """The grid as JSON: its size and the cells that are not zero, ``[row, col, count]``."""
        rows, cols = np.nonzero(self.counts)
        return {
            "width": self.width,
            "height": self.height,
            "cell": self.cell,
            "cells": [[int(r), int(c), int(self.counts[r, c])] for r, c in zip(rows, cols, strict=True)],
        }

    @classmethod
    def from_json(cls, value: dict[str, object]) -> Heatmap:
        heatmap = cls.empty(int(value["width"]), int(value["height"]))  # type: ignore[call-overload]
        for r, c, n in value["cells"]:  # type: ignore[attr-defined]
            heatmap.counts[r, c] = n
        return heatmap


@dataclass(frozen=True)
class Positions:
    """Every tracked object's anchor, one row per (track, analysed frame), sorted by track
    id then frame; each track's label and class id; and the analysed frames' timestamps.

    Attributes:
        track_id, frame: ``int64 [N]``.
        timestamp, x, y: ``float64 [N]``: seconds, and the anchor in frame pixels.
        labels: track id -> (label, class id), the track's first object's.
        frame_timestamps: ``float64 [F]``, every analysed frame's timestamp, in order.
    """

    track_id: npt.NDArray[np.int64]
    frame: npt.NDArray[np.int64]
    timestamp: npt.NDArray[np.float64]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    labels: dict[int, tuple[str, int]]
    frame_timestamps: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.track_id)

    def select(self, mask: npt.NDArray[np.bool_]) -> Positions:
        """The rows where ``mask`` is true (still sorted by track and frame)."""
        return Positions(
            self.track_id[mask],
            self.frame[mask],
            self.timestamp[mask],
            self.x[mask],
            self.y[mask],
            self.labels,
            self.frame_timestamps,
        )


class PositionCollector:
    """Gathers `Positions` and a `Heatmap` from analysed frames given in frame order."""

    def __init__(self, anchor: str, width: int, height: int) -> None:
        self.anchor = anchor
        self.heatmap = Heatmap.empty(width, height)
        self._parts: list[
            tuple[npt.NDArray[np.int64], int, float, npt.NDArray[np.float64], npt.NDArray[np.float64]]
        ] = []
        self._timestamps: list[float] = []
        self._labels: dict[int, tuple[str, int]] = {}

    def add(self, frame: AnalysedFrame) -> None:
        self._timestamps.append(frame.timestamp)
        found: Detections = frame.detections
        if not len(found):
            return
        x, y = anchor_points(found.xyxy, self.anchor)
        self.heatmap.add(x, y)
        if found.track_id is None:
            return
        tracked = found.track_id != NO_TRACK
        if not tracked.any():
            return
        ids = found.track_id[tracked]
        labels, classes = found.label[tracked].tolist(), found.class_id[tracked].tolist()
        for track, label, class_id in zip(ids.tolist(), labels, classes, strict=True):
            self._labels.setdefault(track, (label, class_id))
        self._parts.append((ids, frame.frame, frame.timestamp, x[tracked], y[tracked]))

    def finish(self) -> Positions:
        if self._parts:
            ids = np.concatenate([p[0] for p in self._parts])
            frames = np.concatenate([np.full(len(p[0]), p[1], dtype=np.int64) for p in self._parts])
            stamps = np.concatenate([np.full(len(p[0]), p[2], dtype=np.float64) for p in self._parts])
            xs = np.concatenate([p[3] for p in self._parts]).astype(np.float64)
            ys = np.concatenate([p[4] for p in self._parts]).astype(np.float64)
        else:
            ids = frames = np.zeros(0, dtype=np.int64)
            stamps = xs = ys = np.zeros(0, dtype=np.float64)
        order = np.lexsort((frames, ids))
        return Positions(
            ids[order],
            frames[order],
            stamps[order],
            xs[order],
            ys[order],
            dict(self._labels),
            np.asarray(self._timestamps, dtype=np.float64),
        )
