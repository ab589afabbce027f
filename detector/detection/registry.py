"""Building predictors: which class each backend is, and one predictor per process.

Each backend's module is imported only when a predictor of that backend is
built, so a torchvision-only install never needs Detectron2, and importing
``detector.detection`` imports no backend (nor torch).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections import OrderedDict
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


def _onnxruntime() -> PredictorClass:
    from detector.detection.onnx_backend import OnnxRuntimePredictor

    return OnnxRuntimePredictor


def _openvino() -> PredictorClass:
    from detector.detection.onnx_backend import OpenVinoPredictor

    return OpenVinoPredictor


def _tflite() -> PredictorClass:
    from detector.detection.file_backend import LiteRtFilePredictor

    return LiteRtFilePredictor


def _onnxruntime_file() -> PredictorClass:
    from detector.detection.file_backend import OnnxRuntimeFilePredictor

    return OnnxRuntimeFilePredictor


def _openvino_file() -> PredictorClass:
    from detector.detection.file_backend import OpenVinoFilePredictor

    return OpenVinoFilePredictor


#: Backend name (every one of ``base.BACKENDS``) -> a function that imports the
#: backend's module and returns its predictor class.
PREDICTOR_CLASSES: dict[str, Callable[[], PredictorClass]] = {
    "torchvision": _torchvision,
    "detectron2": _detectron2,
    "onnxruntime": _onnxruntime,
    "openvino": _openvino,
    "tflite": _tflite,
}

#: Backend name (every one of ``base.FILE_BACKENDS``) -> the same for a model file
#: (settings with ``file`` and ``family``: ``file_backend``).
FILE_PREDICTOR_CLASSES: dict[str, Callable[[], PredictorClass]] = {
    "onnxruntime": _onnxruntime_file,
    "openvino": _openvino_file,
    "tflite": _tflite,
}


def detectron2_config_labels(settings: DetectorSettings) -> list[str]:
    """The labels of a Detectron2 config (its test dataset's), importing Detectron2."""
    from detector.detection.detectron2_backend import config_labels

    return config_labels(settings)


def predictor_class(backend: str, file: bool = False) -> PredictorClass:
    """The predictor class of ``backend`` (for a model file when ``file``), importing its module.

    Raises:
        ValueError: an unknown backend.
    """
    if file:
        if backend not in FILE_PREDICTOR_CLASSES:
            raise ValueError(
                f"backend {backend!r} runs no model file; one of {', '.join(FILE_PREDICTOR_CLASSES)}"
            )
        return FILE_PREDICTOR_CLASSES[backend]()
    if backend not in PREDICTOR_CLASSES:
        raise ValueError(f"unknown backend {backend!r}; one of {', '.join(PREDICTOR_CLASSES)}")
    return PREDICTOR_CLASSES[backend]()


def build_predictor(settings: DetectorSettings, process_index: int = 0) -> Predictor:
    """Build the predictor ``settings`` describe, on the device for ``process_index``."""
    cls = predictor_class(settings.backend, file=settings.is_file_model)
    device = resolve_device(settings.device, process_index, cuda_device_count())
    # Each backend turns DETECTOR_BATCH_SIZE=auto into a number for its device and
    # its model's input size (DetectorSettings.batch_size_on).
    predictor = cls(settings, device)
    release_freed_memory()
    return predictor


#: What each allocator calls handing its free memory back to the system, most
#: specific first: mimalloc's and tcmalloc's only resolve where that allocator is
#: loaded (detector/runtime/allocator.py), glibc's always does.
_RELEASE_CALLS: tuple[tuple[str, tuple[object, ...]], ...] = (
    ("mi_collect", (ctypes.c_bool(True),)),
    ("MallocExtension_ReleaseFreeMemory", ()),
    ("malloc_trim", (ctypes.c_size_t(0),)),
)


def release_freed_memory() -> str | None:
    """Hand the memory this process has freed, and its allocator keeps, back to the system;
    the name of the call that did it, or None where there is none (not glibc, nor
    tcmalloc or mimalloc).

    Loading weights frees about as much as the model holds: the checkpoint's
    tensors, once copied into the model. tcmalloc and mimalloc keep freed memory
    for reuse, so every process that loads a model would carry it for good,
    between batches and when idle (190 MB for a Mask R-CNN R50-FPN on mimalloc;
    docs/performance.md, "Against the 2021 prototype").
    """
    try:
        process = ctypes.CDLL(None)
    except OSError:  # no C library to ask (not a POSIX system)
        return None
    for name, args in _RELEASE_CALLS:
        call = getattr(process, name, None)
        if call is not None:
            call(*args)
            return name
    return None


# Built predictors, least recently used first.
_cache: OrderedDict[tuple[DetectorSettings, int], Predictor] = OrderedDict()
_cache_lock = threading.Lock()


def get_predictor(settings: DetectorSettings, process_index: int = 0, keep: int | None = None) -> Predictor:
    """The predictor for ``settings``, built once per process on first use.

    A process serving several models keeps at most ``keep`` predictors built
    (None: no limit): building one more drops the least recently used, and its
    memory (GPU memory included) is given back before the new one is built.

    Call it in the process that runs the model (a worker child, after fork):
    building it in a parent would initialise CUDA before the fork.
    """
    key = (settings, process_index)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        if keep is not None and len(_cache) >= max(1, keep):
            while len(_cache) >= max(1, keep):
                dropped, _ = _cache.popitem(last=False)
                log.info("dropping predictor %s in pid %d (keeping %d)", dropped[0], os.getpid(), keep)
            _release_memory()
        log.info("building predictor %s in pid %d", settings, os.getpid())
        _cache[key] = predictor = build_predictor(settings, process_index)
        return predictor


def loaded_predictors() -> list[DetectorSettings]:
    """The settings of the predictors this process holds, least recently used first."""
    with _cache_lock:
        return [settings for settings, _ in _cache]


def _release_memory() -> None:
    """Free what dropped predictors held: Python's cycles, then the GPU's cache."""
    import gc

    gc.collect()
    import sys

    torch = sys.modules.get("torch")  # only a process that has built a predictor has torch
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
