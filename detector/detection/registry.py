"""Building predictors: which class each backend is, and one predictor per process.

Each backend's module is imported only when a predictor of that backend is
built, so a torchvision-only install never needs Detectron2, and importing
``detector.detection`` imports no backend (nor torch).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from detector.detection.base import DetectorSettings, Predictor
from detector.detection.devices import cuda_device_count, resolve_device

log = logging.getLogger(__name__)

#: A predictor class: built as ``cls(settings, device)``.
PredictorClass = Callable[[DetectorSettings, str], Predictor]


def _torchvision() -> PredictorClass:
    from detector.detection.torchvision_backend import TorchvisionPredictor

    return TorchvisionPredictor


def _detectron2() -> PredictorClass:
    from detector.detection.detectron2_backend import Detectron2Predictor

    return Detectron2Predictor


#: Backend name (every one of ``base.BACKENDS``) -> a function that imports the
#: backend's module and returns its predictor class.
PREDICTOR_CLASSES: dict[str, Callable[[], PredictorClass]] = {
    "torchvision": _torchvision,
    "detectron2": _detectron2,
}


def detectron2_config_labels(settings: DetectorSettings) -> list[str]:
    """The labels of a Detectron2 config (its test dataset's), importing Detectron2."""
    from detector.detection.detectron2_backend import config_labels

    return config_labels(settings)


def predictor_class(backend: str) -> PredictorClass:
    """The predictor class of ``backend``, importing its module.

    Raises:
        ValueError: an unknown backend.
    """
    if backend not in PREDICTOR_CLASSES:
        raise ValueError(f"unknown backend {backend!r}; one of {', '.join(PREDICTOR_CLASSES)}")
    return PREDICTOR_CLASSES[backend]()


def build_predictor(settings: DetectorSettings, process_index: int = 0) -> Predictor:
    """Build the predictor ``settings`` describe, on the device for ``process_index``."""
    cls = predictor_class(settings.backend)
    return cls(settings, resolve_device(settings.device, process_index, cuda_device_count()))


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
            log.info("building predictor %s in pid %d", settings, os.getpid())
            _cache[key] = build_predictor(settings, process_index)
        return _cache[key]
