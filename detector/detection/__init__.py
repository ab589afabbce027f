"""Object detectors behind one interface: a batch of BGR frames in, objects per frame out.

Backends: ``torchvision`` (Faster R-CNN; runs anywhere) and ``detectron2`` (the
production engine on GPUs). Nothing here knows about Flask, Celery or the
database, and importing this package imports neither torch nor a backend: the
API uses ``model_identity`` without torch installed.

Modules: ``detections`` (`Detections`, the one shape of a frame's objects, and
`AnalysedFrame`), ``base`` (the interface and its settings), ``registry`` (building
predictors, one per process), ``identity`` (``model_identity``), ``devices``,
``weights`` (where checkpoints come from), ``random_weights`` (seeded random
weights), ``batching`` (frames to the device), and one module per backend.
"""

from detector.detection.base import DetectorSettings, Predictor, WeightsError
from detector.detection.detections import NO_TRACK, AnalysedFrame, Detections
from detector.detection.devices import resolve_device
from detector.detection.identity import model_identity
from detector.detection.registry import build_predictor, get_predictor

__all__ = [
    "NO_TRACK",
    "AnalysedFrame",
    "Detections",
    "DetectorSettings",
    "Predictor",
    "WeightsError",
    "build_predictor",
    "get_predictor",
    "model_identity",
    "resolve_device",
]
