"""Model files in the layouts exported detectors come in: the ``ssd``, ``yolo`` and
``detr`` families.

A catalog table with ``file`` and ``family`` (see ``detector.detection.catalog``)
declares one. `open_file_model` reads the file's description (no weights run,
no torch), checks that its inputs and outputs fit the family and its labels,
and decides its input (`InputFormat`); the file backend
(``detector.detection.file_backend``) runs it and `FileModel.detections` turns
its outputs into `Detections`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.detection.base import DetectorSettings, InputSpec
from detector.detection.detections import Detections
from detector.detection.families.detr import DETR
from detector.detection.families.family import Decoded, Family
from detector.detection.families.files import (
    ModelFile,
    ModelFileError,
    read_model_file,
    ultralytics_metadata,
)
from detector.detection.families.input import Geometry, InputFormat, prepare
from detector.detection.families.labels import LabelsError, read_labels
from detector.detection.families.ssd import SSD
from detector.detection.families.yolo import YOLO

__all__ = [
    "FAMILIES",
    "FileModel",
    "Geometry",
    "InputFormat",
    "LabelsError",
    "ModelFile",
    "ModelFileError",
    "file_labels",
    "open_file_model",
    "prepare",
    "read_labels",
    "read_model_file",
]

#: Each family by its catalog name.
FAMILIES: dict[str, Family] = {family.name: family for family in (SSD(), YOLO(), DETR())}

#: The file types each file backend reads.
BACKEND_SUFFIXES = {
    "onnxruntime": (".onnx",),
    "openvino": (".onnx", ".xml"),
    "tflite": (".tflite",),
}

_PLACEHOLDERS = frozenset({"__background__", "N/A"})


@dataclass(frozen=True)
class FileModel:
    """A checked model file: its description, family, labels (by class id) and input."""

    file: ModelFile
    family: Family
    labels: tuple[str, ...]
    input: InputFormat

    @property
    def batch(self) -> int | None:
        """The batch size the file fixes (None: any)."""
        return self.file.image_input.shape[0]

    def detections(self, outputs: Sequence[np.ndarray], geometry: Geometry, min_score: float) -> Detections:
        """One frame's `Detections` from the file's outputs for it (batch axis removed):
        decoded by the family, boxes back in the frame's pixels, objects whose class
        is a placeholder (``N/A``, ``__background__``) left out, highest score first."""
        found: Decoded = self.family.decode(
            self.file, outputs, (self.input.width, self.input.height), min_score
        )
        boxes = geometry.to_frame(found.boxes)
        named = np.array(
            [
                not (0 <= c < len(self.labels) and self.labels[c] in _PLACEHOLDERS)
                for c in found.classes.tolist()
            ],
            dtype=bool,
        )
        order = np.argsort(-found.scores[named], kind="stable")
        return Detections.from_model(
            boxes[named][order], found.scores[named][order], found.classes[named][order], self.labels
        )


def file_labels(settings: DetectorSettings) -> list[str]:
    """The labels of a file model that declares none: its Ultralytics metadata's ``names``.

    Raises:
        ModelFileError: the file cannot be read or names no labels.
    """
    assert settings.file is not None
    model = read_model_file(settings.file)
    names = ultralytics_metadata(model.metadata).names
    if names is None:
        raise ModelFileError(
            f"model file {model.path.name} names no labels in its metadata: declare labels "
            "(a file with one name per line, or a list)"
        )
    return list(names)


def open_file_model(settings: DetectorSettings) -> FileModel:
    """The checked model file ``settings`` declare (``file``, ``family``, ``labels``, ``input``).

    Raises:
        ModelFileError: the file is missing, unreadable, of a type its backend does
            not read, or its inputs or outputs do not fit the family, the labels
            or the declared input; the message says which.
        LabelsError: the ``labels`` cannot be read.
    """
    if settings.file is None or settings.family is None:
        raise ModelFileError("not a file model: set file and family")
    model = read_model_file(settings.file)
    suffixes = BACKEND_SUFFIXES.get(settings.backend, ())
    if model.path.suffix.lower() not in suffixes:
        raise ModelFileError(
            f"backend {settings.backend} reads {', '.join(suffixes)} files, not {model.path.name}"
        )
    family = FAMILIES[settings.family]
    labels = tuple(read_labels(settings.labels) if settings.labels is not None else file_labels(settings))
    family.check(model, labels)
    return FileModel(model, family, labels, input_format(model, family, settings.input))


def input_format(model: ModelFile, family: Family, spec: InputSpec | None) -> InputFormat:
    """The input the file wants: the catalog's ``input`` table where it says, else what
    the file's input shape and type and its Ultralytics metadata say, else the family's
    defaults.

    Raises:
        ModelFileError: the table contradicts the file (size, layout or type).
    """
    spec = spec or InputSpec()
    image = model.image_input
    shape = image.shape
    file_layout = "NCHW" if shape[1] == 3 else "NHWC" if shape[3] == 3 else None
    layout = spec.layout or file_layout or family.default_layout
    if file_layout is not None and layout != file_layout:
        raise ModelFileError(
            f"{model.path.name}: input.layout is {layout} but its input {image.name} is {file_layout} {list(shape)}"
        )
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    file_size = (w, h) if w is not None and h is not None else None
    imgsz = ultralytics_metadata(model.metadata).imgsz
    size = spec.size or file_size or ((imgsz[1], imgsz[0]) if imgsz else None) or family.default_size
    if file_size is not None and size != file_size:
        raise ModelFileError(
            f"{model.path.name}: input.size is {list(size)} (width, height) but its input "
            f"{image.name} takes {list(file_size)}"
        )
    file_dtype = image.dtype if image.dtype in ("uint8", "float32", "float16") else None
    dtype = spec.dtype or file_dtype or "float32"
    if file_dtype is not None and dtype != file_dtype:
        raise ModelFileError(
            f"{model.path.name}: input.dtype is {dtype} but its input {image.name} is {file_dtype}"
        )
    scale, mean, std = family.default_normalisation(model, dtype)
    return InputFormat(
        width=size[0],
        height=size[1],
        layout=layout,
        dtype=dtype,
        channels=spec.channels or "RGB",
        scale=spec.scale if spec.scale is not None else scale,
        mean=spec.mean if spec.mean is not None else mean,
        std=spec.std if spec.std is not None else std,
        resize=spec.resize or family.default_resize,
    )
