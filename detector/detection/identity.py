"""Which model a job runs, as one string, known before any model is built.

``model_identity(settings)`` names the backend, the model and its weights, for
example ``torchvision/fasterrcnn_mobilenet_v3_large_fpn@fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth``.
The API records it when a job is created and a predictor built from the same
settings has it as its ``name``, so a job's model never changes while it runs.

This module imports neither torch nor any backend: the API image has no torch.
So the default models' checkpoints are listed here as constants; the tests check
them against torchvision and Detectron2.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from urllib.parse import urlparse

from detector.detection.base import DetectorSettings, WeightsError
from detector.detection.weights import HOW_TO_PROVIDE

TORCHVISION_DEFAULT_MODEL = "fasterrcnn_mobilenet_v3_large_fpn"

#: The torchvision models the service can build, and their pretrained COCO checkpoints.
TORCHVISION_CHECKPOINTS = {
    "fasterrcnn_mobilenet_v3_large_fpn": (
        "https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        "https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
    ),
    "fasterrcnn_resnet50_fpn": "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    "fasterrcnn_resnet50_fpn_v2": (
        "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"
    ),
}

#: The backends that run torchvision's models: torchvision itself, and its ONNX
#: export on ONNX Runtime or OpenVINO (same models, same checkpoints).
TORCHVISION_MODEL_BACKENDS = ("torchvision", "onnxruntime", "openvino")

DETECTRON2_DEFAULT_MODEL = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"

#: The model-zoo checkpoint of Detectron2's default config. Other zoo configs'
#: checkpoints need Detectron2's own table to look up, so their weights are
#: called ``default``: within one Detectron2 version a zoo config name fixes its
#: checkpoint.
DETECTRON2_DEFAULT_CHECKPOINT = (
    "https://dl.fbaipublicfiles.com/detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/"
    "model_final_280758.pkl"
)

#: How many hex digits of a local file's SHA-256 go into its identity.
CHECKSUM_DIGITS = 16


def model_identity(settings: DetectorSettings) -> str:
    """``backend/model@weights``: exactly which model and weights ``settings`` mean.

    The weights part is the pretrained checkpoint's file name for ``default``
    (its name carries a hash of its content), ``sha256:<prefix>`` of the file's
    content for a local file, the URL itself for a URL, and ``random(seed=N)``
    for seeded random weights. Nothing is built or downloaded; a local weights
    file is read once to checksum it (see ``file_checksum``).

    ``onnxruntime`` and ``openvino`` run the torchvision models, so they take the
    same model names and checkpoints:
    ``onnxruntime/fasterrcnn_mobilenet_v3_large_320_fpn@random(seed=0)``.

    A model file (``file`` and ``family``) is ``backend/family:file name@sha256:<prefix>``
    of the file's content (for OpenVINO IR, of the ``.xml`` and then its ``.bin``):
    ``onnxruntime/yolo:yolo11n.onnx@sha256:5f1c0a9e2b7d4c11``.

    A model at ``precision = "int8"`` ends in ``+int8(calibration=sha256:<prefix>)``,
    of its calibration frames (`calibration_checksum`): other frames make another
    model. ``openvino/ssd:ssd.onnx@sha256:01c2e148122f111f+int8(calibration=sha256:9d0e...)``.

    Raises:
        ValueError: an unknown backend or torchvision model.
        WeightsError: the weights are a local file that does not exist (or the model file).
    """
    if settings.file is not None:
        path = Path(settings.file).expanduser()
        if not path.is_file():
            raise WeightsError(f"model file {path} does not exist")
        identity = f"{settings.backend}/{settings.family}:{path.name}@sha256:{model_file_checksum(path)}"
        return identity + precision_identity(settings)
    if settings.backend in TORCHVISION_MODEL_BACKENDS:
        model = settings.model or TORCHVISION_DEFAULT_MODEL
        if model not in TORCHVISION_CHECKPOINTS:
            raise ValueError(
                f"unknown torchvision model {model!r}; one of {', '.join(TORCHVISION_CHECKPOINTS)}"
            )
        default_checkpoint: str | None = TORCHVISION_CHECKPOINTS[model]
    elif settings.backend == "detectron2":
        model = settings.model or DETECTRON2_DEFAULT_MODEL
        default_checkpoint = DETECTRON2_DEFAULT_CHECKPOINT if model == DETECTRON2_DEFAULT_MODEL else None
    else:
        raise ValueError(f"unknown backend {settings.backend!r}")
    identity = f"{settings.backend}/{model}@{weights_identity(settings, default_checkpoint)}"
    return identity + precision_identity(settings)


def precision_identity(settings: DetectorSettings) -> str:
    """The end of ``model_identity`` that names the precision: empty at ``fp32``,
    ``+int8(calibration=sha256:<prefix>)`` at ``int8``.

    Raises:
        WeightsError: the calibration frames are not there.
    """
    if settings.precision == "fp32" or settings.calibration is None:
        return ""
    return f"+{settings.precision}(calibration=sha256:{calibration_checksum(Path(settings.calibration))})"


#: The image files a calibration folder's frames are read from.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def calibration_files(source: Path) -> list[Path]:
    """The files of a calibration source: the video itself, or a folder's images
    (`IMAGE_SUFFIXES`) sorted by name.

    Raises:
        WeightsError: nothing there, or a folder without images.
    """
    source = source.expanduser()
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise WeightsError(f"calibration {source} is neither a video nor a folder of frames")
    images = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise WeightsError(f"calibration folder {source} has no {', '.join(IMAGE_SUFFIXES)} images")
    return images


def calibration_checksum(source: Path) -> str:
    """`file_checksum` of a calibration video, or of a folder's images' names and
    checksums in order.

    Raises:
        WeightsError: as `calibration_files`.
    """
    files = calibration_files(source)
    if len(files) == 1 and files[0] == source.expanduser():
        return file_checksum(files[0])
    listing = "\n".join(f"{p.name} {file_checksum(p)}" for p in files).encode()
    return hashlib.sha256(listing).hexdigest()[:CHECKSUM_DIGITS]


def weights_identity(settings: DetectorSettings, default_checkpoint: str | None) -> str:
    """The ``@...`` part of ``model_identity``: which weights ``settings.weights`` means.

    Args:
        settings: ``weights`` is ``default``, ``random``, a file path or an http(s) URL.
        default_checkpoint: the URL of the model's pretrained checkpoint, or
            None when it is not known here (the identity then says ``default``).
    """
    spec = settings.weights
    if spec == "random":
        return f"random(seed={settings.seed})"
    if spec == "default":
        if default_checkpoint is None:
            return "default"
        return Path(urlparse(default_checkpoint).path).name
    if urlparse(spec).scheme in ("http", "https"):
        return spec
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist. {HOW_TO_PROVIDE}")
    return f"sha256:{file_checksum(path)}"


def model_file_checksum(path: Path) -> str:
    """`file_checksum` of a model file; for OpenVINO IR (``.xml``) of the ``.xml`` and
    its ``.bin`` together, where the weights are."""
    weights = path.with_suffix(".bin")
    if path.suffix.lower() != ".xml" or not weights.is_file():
        return file_checksum(path)
    both = f"{file_checksum(path)}{file_checksum(weights)}".encode()
    return hashlib.sha256(both).hexdigest()[:CHECKSUM_DIGITS]


def file_checksum(path: Path) -> str:
    """The first ``CHECKSUM_DIGITS`` hex digits of the SHA-256 of the file's content.

    Remembered per path, size and modification time, so asking again for a
    file that has not changed does not read it again.
    """
    stat = path.stat()
    return _checksum(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def file_sha256(path: Path) -> str:
    """The full SHA-256 of the file's content, in hex (remembered as `file_checksum` is)."""
    stat = path.expanduser().stat()
    return _sha256(str(path.expanduser().resolve()), stat.st_size, stat.st_mtime_ns)


def _checksum(path: str, size: int, mtime_ns: int) -> str:
    """The checksum of ``path``; ``size`` and ``mtime_ns`` are only part of the cache key."""
    return _sha256(path, size, mtime_ns)[:CHECKSUM_DIGITS]


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
