"""Object detectors behind one interface: a batch of BGR frames in, objects per frame out.

Backends: ``torchvision`` (Faster R-CNN; runs anywhere) and ``detectron2`` (the
production engine on GPUs). Nothing here knows about Flask, Celery or the database.
"""

from detector.detection.base import (
    DetectedObject,
    DetectorSettings,
    Predictor,
    WeightsError,
    build_predictor,
    get_predictor,
)
from detector.detection.devices import resolve_device

__all__ = [
    "DetectedObject",
    "DetectorSettings",
    "Predictor",
    "WeightsError",
    "build_predictor",
    "get_predictor",
    "resolve_device",
]
