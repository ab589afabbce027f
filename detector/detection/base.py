"""The predictor interface, its settings, and the per-process predictor cache."""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypedDict

import numpy as np

from detector.runtime.allocator import loaded_allocator

log = logging.getLogger(__name__)

BACKENDS = ("torchvision", "detectron2")


class DetectedObject(TypedDict):
    """One object: box ``[x1, y1, x2, y2]`` in pixels of the original frame."""

    label: str
    class_id: int
    score: float
    box: list[float]


class WeightsError(RuntimeError):
    """Model weights cannot be had; the message says how to provide them."""


@dataclass(frozen=True)
class DetectorSettings:
    """How to build a predictor. Read from ``DETECTOR_*`` settings.

    Attributes:
        backend: ``torchvision`` or ``detectron2``.
        model: the backend's model name (torchvision builder or Detectron2 zoo
            config / config file); None for the backend's default.
        weights: ``default`` (the model's pretrained COCO weights, downloaded
            once into ``cache_dir``), a local file, an http(s) URL, or
            ``random`` (seeded random weights, for tests and benchmarks only).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: frames per forward pass.
        min_score: the model's own score floor; no job gets objects below it.
        seed: the seed for ``random`` weights.
        cache_dir: where downloaded weights are kept.
    """

    backend: str = "torchvision"
    model: str | None = None
    weights: str = "default"
    device: str = "auto"
    batch_size: int = 8
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
        settings = cls(**values)
        if settings.backend not in BACKENDS:
            raise ValueError(f"DETECTOR_BACKEND must be one of {', '.join(BACKENDS)}")
        if settings.batch_size < 1:
            raise ValueError("DETECTOR_BATCH_SIZE must be at least 1")
        return settings


class Predictor(ABC):
    """A detection model on one device, called on batches of frames."""

    #: ``backend/model``, recorded on each job.
    name: str
    device: str
    batch_size: int

    @abstractmethod
    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[list[DetectedObject]]:
        """Objects at or above the model's score floor, for each frame of one batch.

        Args:
            frames: BGR ``uint8`` arrays of shape ``(H, W, 3)``.
        Returns:
            One list of objects per frame, highest score first.
        """

    def predict(self, frames: Sequence[np.ndarray], score_threshold: float) -> list[list[DetectedObject]]:
        """Objects scoring at least ``score_threshold`` in each frame, in batches.

        A batch that runs out of GPU memory is retried in halves before the
        error is raised.
        """
        results: list[list[DetectedObject]] = []
        size = self.batch_size
        pos = 0
        while pos < len(frames):
            batch = frames[pos : pos + size]
            try:
                objects = self.predict_batch(batch)
            except Exception as exc:
                if not _is_out_of_memory(exc) or size == 1:
                    raise
                _free_device_memory()
                size = max(1, size // 2)
                log.warning("out of memory at batch %d, retrying with %d", len(batch), size)
                continue
            results.extend([o for o in per_frame if o["score"] >= score_threshold] for per_frame in objects)
            pos += len(batch)
        return results


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_predictor(settings: DetectorSettings, process_index: int = 0) -> Predictor:
    """Build the predictor ``settings`` describe, on the device for ``process_index``."""
    from detector.detection.devices import cuda_device_count, resolve_device

    device = resolve_device(settings.device, process_index, cuda_device_count())
    if settings.backend == "detectron2":
        from detector.detection.detectron2_backend import Detectron2Predictor

        return Detectron2Predictor(settings, device)
    from detector.detection.torchvision_backend import TorchvisionPredictor

    return TorchvisionPredictor(settings, device)


_cache: dict[tuple[DetectorSettings, int], Predictor] = {}
_cache_lock = threading.Lock()


def get_predictor(settings: DetectorSettings, process_index: int = 0) -> Predictor:
    """The predictor for ``settings``, built once per process on first use.

    Call it in the process that runs the model (a worker child, after fork):
    building it in a parent would initialise CUDA before the fork.
    """
    key = (settings, process_index)
    with _cache_lock:
        if key not in _cache:
            log.info(
                "building predictor %s in pid %d (allocator: %s)", settings, os.getpid(), loaded_allocator()
            )
            _cache[key] = build_predictor(settings, process_index)
        return _cache[key]


def to_objects(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, labels: Sequence[str]
) -> list[DetectedObject]:
    """Rows of (box, score, class) as the service's objects, rounded for JSON."""
    return [
        DetectedObject(
            label=labels[int(c)] if int(c) < len(labels) else str(int(c)),
            class_id=int(c),
            score=round(float(s), 6),
            box=[round(float(v), 2) for v in b],
        )
        for b, s, c in zip(boxes, scores, classes, strict=True)
    ]
