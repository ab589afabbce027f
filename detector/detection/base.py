"""The predictor interface and its settings.

No backend is imported here: ``detector.detection.registry`` builds predictors.
What a predictor finds is `detector.detection.detections.Detections`.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from detector.detection.detections import Detections

log = logging.getLogger(__name__)

#: The backends ``DETECTOR_BACKEND`` may name (``registry`` knows how to build each).
BACKENDS = ("torchvision", "detectron2", "onnxruntime", "openvino")


class WeightsError(RuntimeError):
    """Model weights cannot be had; the message says how to provide them."""


@dataclass(frozen=True)
class DetectorSettings:
    """How to build a predictor. Read from ``DETECTOR_*`` settings.

    Attributes:
        backend: ``torchvision``, ``detectron2``, or ``onnxruntime`` or
            ``openvino`` (the torchvision models, exported to ONNX and run on
            that CPU runtime: ``onnx_backend``).
        model: the backend's model name (torchvision builder, also for
            ``onnxruntime`` and ``openvino``, or Detectron2 zoo config / config
            file); None for the backend's default.
        weights: ``default`` (the model's pretrained COCO weights, downloaded
            once into ``cache_dir``), a local file, an http(s) URL, or
            ``random`` (seeded random weights, for tests and benchmarks only).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: frames per forward pass, at most (a predictor halves it
            when a batch runs out of GPU memory); ``auto`` (the default):
            `default_batch_size` of the device the predictor runs on.
        min_score: the model's own score floor; no job gets objects below it.
        seed: the seed for ``random`` weights.
        cache_dir: where downloaded weights are kept.
    """

    backend: str = "torchvision"
    model: str | None = None
    weights: str = "default"
    device: str = "auto"
    batch_size: int | str = "auto"
    min_score: float = 0.05
    seed: int = 0
    cache_dir: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DetectorSettings:
        """From a settings mapping with ``DETECTOR_BACKEND``, ``DETECTOR_MODEL``, ..."""
        values = {}
        for field in fields(cls):
            key = f"DETECTOR_{field.name.upper()}"
            if config.get(key) is not None:
                values[field.name] = config[key]
        if "batch_size" in values:
            values["batch_size"] = _batch_size(values["batch_size"])
        settings = cls(**values)
        if settings.backend not in BACKENDS:
            raise ValueError(f"DETECTOR_BACKEND must be one of {', '.join(BACKENDS)}")
        return settings

    def batch_size_on(self, device: str, input_size: tuple[int, int] | None = None) -> int:
        """Frames per forward pass on ``device``: ``batch_size``, or for ``auto``
        `default_batch_size` for a model that sees frames at ``input_size``."""
        if self.batch_size == "auto":
            return default_batch_size(device, input_size)
        return int(self.batch_size)


#: Frames per forward pass when DETECTOR_BATCH_SIZE is ``auto``. On a GPU batching
#: is where the speed comes from: 8 frames. On the CPU a batch costs memory in
#: proportion to its pixels and buys speed only for small inputs, so ``auto``
#: takes as many frames as fit in CPU_BATCH_PIXELS at the model's input size
#: (its shortest and longest edge), 1 to 8: 8 for the 320 px MobileNet, 1 for
#: the 800 px models. Measured (docs/performance.md, "Against the 2021 prototype"
#: and "CPU runtimes"): Detectron2's Mask R-CNN at 800 px peaked at 1.9 GB at
#: batch 1, 2.2 GB at batch 2 and 5 GB at batch 8, and ran fastest at batch 1;
#: the 320 px MobileNet ran 17 % faster at batch 8 than at 1 on PyTorch, 41 %
#: on OpenVINO.
GPU_BATCH_SIZE = 8
CPU_BATCH_PIXELS = 8 * 320 * 640


def default_batch_size(device: str, input_size: tuple[int, int] | None = None) -> int:
    """The batch size ``auto`` means on ``device`` (a torch device: ``cpu``, ``cuda:N``, ...)
    for a model that sees frames at ``input_size`` (shortest, longest edge; None:
    unknown, 1 on the CPU)."""
    if device.strip().lower() != "cpu":
        return GPU_BATCH_SIZE
    if input_size is None:
        return 1
    short, long = input_size
    return max(1, min(GPU_BATCH_SIZE, CPU_BATCH_PIXELS // max(1, short * long)))


def _batch_size(value: Any) -> int | str:
    """DETECTOR_BATCH_SIZE as ``auto`` or a whole number of at least 1."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"DETECTOR_BATCH_SIZE must be auto or a whole number, got {value!r}") from None
    if size < 1:
        raise ValueError("DETECTOR_BATCH_SIZE must be at least 1")
    return size


class Predictor(ABC):
    """A detection model on one device, called on batches of frames.

    Attributes:
        name: ``model_identity`` of the settings it was built from, recorded on each job.
        device: the torch device it runs on.
        batch_size: frames per forward pass. It starts as the configured size
            and shrinks when a batch runs out of GPU memory (see ``predict``);
            the smaller size is kept for the rest of the process, and the
            pipeline reads it here to batch its frames and to publish it.
    """

    name: str
    device: str
    batch_size: int

    @abstractmethod
    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Objects at or above the model's score floor, for each frame of one batch.

        Args:
            frames: BGR ``uint8`` arrays of shape ``(H, W, 3)``.
        Returns:
            One `Detections` per frame (`Detections.from_model`: rounded as
            stored), highest score first, boxes in pixels of that frame.
        """

    def predict(
        self,
        frames: Sequence[np.ndarray],
        score_threshold: float,
        on_forward: Callable[[int], None] | None = None,
    ) -> list[Detections]:
        """Objects scoring at least ``score_threshold`` in each frame, in batches of ``batch_size``.

        A batch that runs out of GPU memory is retried at half its size, and
        ``batch_size`` becomes that smaller size for every later call: the
        predictor lives as long as its process, and so does what it learnt
        about the device's memory. A batch of one frame that runs out of
        memory raises the error.

        Args:
            frames: BGR ``uint8`` arrays of shape ``(H, W, 3)``.
            score_threshold: objects scoring less are left out.
            on_forward: called with the number of frames of each forward pass
                that succeeded, in order (the real batch sizes, after any
                back-off); passes that ran out of memory are not reported.
        """
        results: list[Detections] = []
        pos = 0
        while pos < len(frames):
            batch = frames[pos : pos + self.batch_size]
            out_of_memory = False
            try:
                found_in_batch = self.predict_batch(batch)
            except Exception as exc:
                if not _is_out_of_memory(exc) or len(batch) == 1:
                    raise
                out_of_memory = True
            if out_of_memory:
                # Outside the `except`: the error's traceback no longer holds the batch's tensors.
                _free_device_memory()
                self._shrink_batch(len(batch))
                continue
            if on_forward is not None:
                on_forward(len(batch))
            results.extend(found[found.score >= score_threshold] for found in found_in_batch)
            pos += len(batch)
        return results

    def _shrink_batch(self, failed: int) -> None:
        """Halve the working batch size after a batch of ``failed`` frames ran out of memory."""
        smaller = max(1, failed // 2)
        if smaller < self.batch_size:
            log.warning(
                "%s on %s ran out of memory at a batch of %d frames: batches of %d from now on in pid %d",
                self.name,
                self.device,
                failed,
                smaller,
                os.getpid(),
            )
            self.batch_size = smaller


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def boxes_in_frame(boxes: np.ndarray, factor: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """``[x1, y1, x2, y2]`` boxes found on a resized frame, in the original frame's
    pixels: scaled by the ``(x, y)`` factors and clipped to its ``(width, height)``."""
    (fx, fy), (width, height) = factor, size
    if fx == 1.0 and fy == 1.0:
        return boxes
    scaled = boxes * np.array([fx, fy, fx, fy], dtype=boxes.dtype)
    return np.clip(scaled, 0, [width, height, width, height]).astype(boxes.dtype)
