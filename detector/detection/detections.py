"""The one shape of a frame's detections: `Detections`, arrays of N objects, and
`AnalysedFrame`, a frame's index, timestamp and detections.

Backends return `Detections`; the pipeline stores them as JSON objects and reads
them back; tracking adds track ids; exports, renders, ``detector predict`` and
the benchmark read them. The design follows supervision's ``sv.Detections``
(parallel arrays checked in ``__post_init__``, ``from_*`` constructors,
indexing by masks) without importing supervision, whose import takes seconds
and pulls OpenCV, SciPy and Pillow into every process.

The JSON form of one object, stored in the ``frames`` table and sent by the API,
is ``{"label", "class_id", "score", "box": [x1, y1, x2, y2]}``, with
``"track_id"`` last when the object has one. `Detections.to_objects` and
`Detections.from_objects` convert both ways without changing a value: boxes and
scores are float64, so every number a stored object holds comes back exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

NO_TRACK = -1
"""The track id that means "none" for one object of a tracked set (its JSON has no ``track_id``)."""

ObjectJSON = dict[str, Any]
"""One object as stored and sent: ``{"label", "class_id", "score", "box"}`` and maybe ``"track_id"``."""

Index = int | slice | Sequence[int] | Sequence[bool] | npt.NDArray[np.integer[Any]] | npt.NDArray[np.bool_]
"""What selects objects: a position, a slice, positions or a boolean mask."""

_FLOAT, _INT, _OBJECT = np.dtype(np.float64), np.dtype(np.int64), np.dtype(object)
_DTYPES = {"xyxy": _FLOAT, "score": _FLOAT, "class_id": _INT, "label": _OBJECT, "track_id": _INT}


def _fits(value: object, dtype: np.dtype[Any], shape: tuple[int, ...]) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == dtype and value.shape == shape


@dataclass(frozen=True, eq=False)
class Detections:
    """The objects found in one frame, as parallel arrays of N rows, highest score first
    as a backend returns them.

    Attributes:
        xyxy: ``float64 [N, 4]``, each box ``x1, y1, x2, y2`` in pixels of the original frame.
        score: ``float64 [N]``, the model's confidence.
        class_id: ``int64 [N]``, the model's class id.
        label: ``object [N]`` of ``str``, the class's name.
        track_id: ``int64 [N]``, each object's track id (`NO_TRACK` for one without),
            or None when the objects were not tracked.

    The fields cannot be reassigned, and the arrays are meant to be read only:
    every operation returns new `Detections`. Select objects with a mask,
    positions or a slice (``detections[detections.score >= 0.5]``,
    ``detections[np.isin(detections.class_id, [1, 3])]``); ``len()`` counts them.
    Two `Detections` are equal when every array is.

    Raises:
        ValueError: an array of the wrong type, dtype or shape (the message names it).
    """

    xyxy: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]
    class_id: npt.NDArray[np.int64]
    label: npt.NDArray[np.object_]
    track_id: npt.NDArray[np.int64] | None = None

    # Objects are selected by index, never iterated one by one.
    __iter__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        score = self.score
        n = len(score) if isinstance(score, np.ndarray) and score.ndim == 1 else -1
        if not (
            _fits(self.xyxy, _FLOAT, (n, 4))
            and _fits(score, _FLOAT, (n,))
            and _fits(self.class_id, _INT, (n,))
            and _fits(self.label, _OBJECT, (n,))
            and (self.track_id is None or _fits(self.track_id, _INT, (n,)))
        ):
            self._explain()

    def _explain(self) -> None:
        """Raise the ValueError that says which array is wrong and how."""
        for name, dtype in _DTYPES.items():
            value = getattr(self, name)
            if value is None and name == "track_id":
                continue
            if not isinstance(value, np.ndarray):
                raise ValueError(f"Detections.{name} must be a numpy array, not {type(value).__name__}")
            if value.dtype != dtype:
                raise ValueError(f"Detections.{name} must have dtype {dtype}, not {value.dtype}")
        if self.score.ndim != 1:
            raise ValueError(f"Detections.score must have shape (N,), not {self.score.shape}")
        n = len(self.score)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"Detections.xyxy must have shape ({n}, 4), not {self.xyxy.shape}")
        for name in ("score", "class_id", "label", "track_id"):
            value = getattr(self, name)
            if value is not None and value.shape != (n,):
                raise ValueError(f"Detections.{name} must have shape ({n},) like score, not {value.shape}")

    @classmethod
    def empty(cls, *, tracked: bool = False) -> Detections:
        """No objects (with an empty ``track_id`` array when ``tracked``)."""
        return cls(
            xyxy=np.empty((0, 4), dtype=np.float64),
            score=np.empty(0, dtype=np.float64),
            class_id=np.empty(0, dtype=np.int64),
            label=np.empty(0, dtype=object),
            track_id=np.empty(0, dtype=np.int64) if tracked else None,
        )

    @classmethod
    def from_model(
        cls,
        boxes: npt.ArrayLike,
        scores: npt.ArrayLike,
        classes: npt.ArrayLike,
        labels: Sequence[str],
    ) -> Detections:
        """A model's output, as stored: boxes ``[N, 4]`` rounded to hundredths of a
        pixel, scores rounded to millionths, each class id named by ``labels``
        (a class id past their end is named by its number).

        On float32 outputs NumPy's rounding gives exactly what Python's ``round``
        gives: a float32 times 100 or 10**6 is exact in float64.
        """
        class_id = np.asarray(classes).astype(np.int64, copy=False).reshape(-1)
        table = np.empty(len(labels), dtype=object)
        table[:] = list(labels)
        known = (class_id >= 0) & (class_id < len(labels))
        names = np.empty(len(class_id), dtype=object)
        names[known] = table[class_id[known]]
        for i in np.flatnonzero(~known).tolist():
            names[i] = str(class_id[i])
        return cls(
            xyxy=np.round(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), 2),
            score=np.round(np.asarray(scores, dtype=np.float64).reshape(-1), 6),
            class_id=class_id,
            label=names,
        )

    @classmethod
    def from_objects(cls, objects: Sequence[Mapping[str, Any]]) -> Detections:
        """Objects in their JSON form (see `to_objects`), as stored or sent.

        ``track_id`` is kept when any object has one (a missing or null one
        becomes `NO_TRACK`); other keys are not kept.

        Raises:
            KeyError: an object lacks ``label``, ``class_id``, ``score`` or ``box``.
            ValueError: a box that is not four numbers, or a value of the wrong kind.
        """
        if not objects:
            return cls.empty()
        tracks = [o.get("track_id") for o in objects]
        missing = tracks.count(None)
        try:
            xyxy = np.array([o["box"] for o in objects], dtype=np.float64)
            score = np.array([o["score"] for o in objects], dtype=np.float64)
            class_id = np.array([o["class_id"] for o in objects], dtype=np.int64)
            if missing == len(tracks):
                track_id = None
            else:
                track_id = np.array(
                    [NO_TRACK if t is None else t for t in tracks] if missing else tracks, dtype=np.int64
                )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"objects that are not detections: {exc}") from None
        label = np.empty(len(objects), dtype=object)
        label[:] = [o["label"] for o in objects]
        return cls(
            xyxy=xyxy,
            score=score,
            class_id=class_id,
            label=label,
            track_id=track_id,
        )

    @classmethod
    def merge(cls, parts: Iterable[Detections]) -> Detections:
        """The objects of ``parts`` one after another. Tracked when any part is: the
        objects of an untracked part get `NO_TRACK`."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        tracked = any(p.track_id is not None for p in parts)
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            class_id=np.concatenate([p.class_id for p in parts]),
            label=np.concatenate([p.label for p in parts]),
            track_id=np.concatenate([p._track_ids_or_no_track() for p in parts]) if tracked else None,
        )

    def _track_ids_or_no_track(self) -> npt.NDArray[np.int64]:
        if self.track_id is not None:
            return self.track_id
        return np.full(len(self), NO_TRACK, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.score)

    def __getitem__(self, index: Index) -> Detections:
        """The objects ``index`` selects, as `Detections` (one position gives one object)."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return Detections(
            xyxy=self.xyxy[index],
            score=self.score[index],
            class_id=self.class_id[index],
            label=self.label[index],
            track_id=None if self.track_id is None else self.track_id[index],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        if self.track_id is None or other.track_id is None:
            same_tracks = self.track_id is None and other.track_id is None
        else:
            same_tracks = np.array_equal(self.track_id, other.track_id)
        return (
            same_tracks
            and np.array_equal(self.xyxy, other.xyxy)
            and np.array_equal(self.score, other.score)
            and np.array_equal(self.class_id, other.class_id)
            and np.array_equal(self.label, other.label)
        )

    __hash__ = None  # type: ignore[assignment]

    def with_track_ids(self, track_id: npt.ArrayLike) -> Detections:
        """These objects with the track ids ``track_id`` (one per object)."""
        return replace(self, track_id=np.asarray(track_id, dtype=np.int64).reshape(-1))

    def track_ids(self) -> list[int | None]:
        """Each object's track id, None for an object without one (or when untracked)."""
        if self.track_id is None:
            return [None] * len(self)
        return [None if t == NO_TRACK else t for t in self.track_id.tolist()]

    def to_objects(self) -> list[ObjectJSON]:
        """The objects in their JSON form, in order: ``{"label", "class_id", "score",
        "box": [x1, y1, x2, y2]}``, and ``"track_id"`` for an object that has one."""
        rows = zip(
            self.label.tolist(), self.class_id.tolist(), self.score.tolist(), self.xyxy.tolist(), strict=True
        )
        objects = [{"label": label, "class_id": c, "score": s, "box": box} for label, c, s, box in rows]
        if self.track_id is not None:
            for obj, track_id in zip(objects, self.track_id.tolist(), strict=True):
                if track_id != NO_TRACK:
                    obj["track_id"] = track_id
        return objects

    def to_json(self) -> str:
        """`to_objects` as JSON text (``json.dumps``, as SQLite's JSON column stores it)."""
        return json.dumps(self.to_objects())


class AnalysedFrame(NamedTuple):
    """One analysed frame: ``frame``, its 0-based index among the video's frames in
    presentation order, ``timestamp``, its seconds since the first frame, and the
    ``detections`` found in it (the API's ``frame``, ``timestamp`` and ``objects``).

    Not to be confused with ``detector.models.FrameDetections``, the database row
    that stores one.
    """

    frame: int
    timestamp: float
    detections: Detections
