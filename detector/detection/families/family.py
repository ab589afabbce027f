"""What every family of exported detectors does: check a file's outputs, decide its
input, and decode its outputs into boxes, scores and class ids."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.detection.families.files import ModelFile, ModelFileError, TensorInfo

#: The IoU above which the service's non-maximum suppression drops the lower-scoring
#: box of a class (Ultralytics' default for prediction).
NMS_IOU = 0.7

#: The most objects kept per frame after non-maximum suppression (Ultralytics' ``max_det``).
MAX_DETECTIONS = 300

#: ``scale, mean, std`` of an input: a pixel ``x`` goes in as ``(x * scale - mean) / std``.
Normalisation = tuple[float, tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class Decoded:
    """One frame's objects as the model found them: ``boxes`` ``[N, 4]`` ``x1, y1, x2,
    y2`` in the model's input pixels, ``scores`` ``[N]``, ``classes`` ``[N]`` class ids."""

    boxes: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]
    classes: npt.NDArray[np.int64]

    @classmethod
    def of(cls, boxes: Any, scores: Any, classes: Any) -> Decoded:
        """From array-likes of any float and int types."""
        return cls(
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            np.asarray(scores, dtype=np.float64).reshape(-1),
            np.asarray(classes).astype(np.int64).reshape(-1),
        )

    @classmethod
    def scoring(cls, boxes: Any, scores: Any, classes: Any, min_score: float) -> Decoded:
        """The rows scoring at least ``min_score`` of boxes ``[N, 4]``, scores ``[N]`` and
        class ids ``[N]`` (floats rounded) that need no NMS."""
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        keep = np.flatnonzero(scores >= min_score)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        classes = np.rint(np.asarray(classes, dtype=np.float64).reshape(-1))
        return cls.of(boxes[keep], scores[keep], classes[keep])

    @classmethod
    def best_class(cls, boxes: Any, per_class: Any, min_score: float) -> Decoded:
        """Boxes ``[N, 4]`` each taking its best class of ``per_class`` ``[N, C]`` scores;
        those scoring at least ``min_score`` go through `nms`."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        per_class = np.asarray(per_class).reshape(len(boxes), -1)
        classes = per_class.argmax(axis=1)
        scores = per_class[np.arange(len(boxes)), classes]
        keep = np.flatnonzero(scores >= min_score)
        keep = keep[nms(boxes[keep], scores[keep], classes[keep])]
        return cls.of(boxes[keep], scores[keep], classes[keep])


class Family(ABC):
    """A family of exported detectors (see ``detector.detection.families``)."""

    #: Its name in the catalog's ``family`` key.
    name = ""
    #: Input defaults of the family (`InputSpec` field -> value), for what neither the
    #: catalog nor the file says.
    default_size = (640, 640)
    default_layout = "NCHW"
    default_resize = "stretch"

    def default_normalisation(self, model: ModelFile, dtype: str) -> Normalisation:
        """``scale, mean, std`` for a ``dtype`` input when the catalog gives none."""
        if dtype == "uint8":
            return 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        return 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def extra_inputs(
        self, model: ModelFile, batch: int, input_size: tuple[int, int]
    ) -> dict[str, np.ndarray]:
        """Inputs besides the frames the file needs for a batch of ``batch`` frames at
        ``input_size`` (width, height), by name."""
        return {}

    @abstractmethod
    def check(self, model: ModelFile, labels: Sequence[str]) -> None:
        """Raise `ModelFileError` (saying what is wrong) unless the file's outputs are
        laid out as this family's, and fit ``labels`` (indexed by class id)."""

    @abstractmethod
    def decode(
        self,
        model: ModelFile,
        outputs: Sequence[np.ndarray],
        input_size: tuple[int, int],
        min_score: float,
    ) -> Decoded:
        """One frame's objects scoring at least ``min_score``, from the file's outputs
        for that frame (in the file's order, batch axis removed); ``input_size`` is the
        ``(width, height)`` the frame was given at."""

    def _fail(self, model: ModelFile, what: str) -> ModelFileError:
        return ModelFileError(f"{model.path.name} is not a {self.name} model: {what} ({model.describe()})")


def named(outputs: Sequence[TensorInfo], *words: str, avoid: Sequence[str] = ()) -> int | None:
    """The position of the first output whose lower-cased name holds one of ``words``
    and none of ``avoid``; None when none does."""
    for i, tensor in enumerate(outputs):
        name = tensor.name.lower()
        if any(w in name for w in words) and not any(a in name for a in avoid):
            return i
    return None


def boxes_output(outputs: Sequence[TensorInfo], *words: str, avoid: Sequence[str] = ()) -> int | None:
    """The position of the boxes output ``[batch, N, 4]``: the first `named` with one of
    ``words``, else the first of that shape; None when that output is not of that
    shape, or there is none."""

    def fits(tensor: TensorInfo) -> bool:
        return len(tensor.shape) == 3 and tensor.shape[2] == 4

    at = named(outputs, *words, avoid=avoid)
    if at is None:
        at = next((i for i, t in enumerate(outputs) if fits(t)), None)
    return at if at is not None and fits(outputs[at]) else None


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """The positions kept by class-aware non-maximum suppression (torchvision's
    ``batched_nms``), highest score first, at most `MAX_DETECTIONS`."""
    if len(scores) == 0:
        return np.empty(0, dtype=np.int64)
    import torch
    from torchvision.ops import batched_nms

    keep = batched_nms(
        torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(classes, dtype=np.int64)),
        iou,
    )
    return keep[:MAX_DETECTIONS].numpy()


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``cx, cy, w, h`` boxes as ``x1, y1, x2, y2``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    half = boxes[..., 2:4] / 2
    return np.concatenate([boxes[..., 0:2] - half, boxes[..., 0:2] + half], axis=-1)


def to_pixels(boxes: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Boxes ``[N, 4]`` normalised to 0-1 as input pixels, at ``input_size`` (width, height)."""
    width, height = input_size
    return np.asarray(boxes, dtype=np.float64) * np.array([width, height, width, height], dtype=np.float64)
