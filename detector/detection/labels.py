"""The label sets of the models: which class id means which object.

Known without building the model (the API lists them and checks a job's
``classes`` without torch): torchvision's COCO detectors number the 91 ids of
the original COCO release, with ``__background__`` at 0 and ``N/A`` where COCO
retired an id; Detectron2's COCO models number the 80 real classes from 0.
tests/detection/test_labels.py checks both against the libraries themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from detector.detection.base import DetectorSettings
from detector.detection.families.labels import LabelsError, read_labels

__all__ = ["LabelsError", "label_list", "label_set", "read_labels"]

#: torchvision's ``weights.meta["categories"]`` for its COCO detection weights, by class id.
TORCHVISION_COCO: tuple[str, ...] = (
    "__background__",
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "N/A",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "N/A",
    "backpack",
    "umbrella",
    "N/A",
    "N/A",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "N/A",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "N/A",
    "dining table",
    "N/A",
    "N/A",
    "toilet",
    "N/A",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "N/A",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

#: Names that hold a place in a label list but are no class a model reports.
PLACEHOLDERS = frozenset({"__background__", "N/A"})

#: Detectron2's COCO ``thing_classes``: the same classes, numbered 0-79.
DETECTRON2_COCO: tuple[str, ...] = tuple(name for name in TORCHVISION_COCO if name not in PLACEHOLDERS)


def _known_labels(backend: str, model: str) -> list[str] | None:
    """The labels of ``model`` on ``backend`` when they are known without a library
    (torchvision's models, Detectron2's COCO configs); None for any other."""
    if backend in ("torchvision", "onnxruntime", "openvino"):
        return list(TORCHVISION_COCO)
    if backend == "detectron2" and (not model or model.startswith("COCO-")):
        return list(DETECTRON2_COCO)
    return None


def label_list(settings: DetectorSettings) -> list[str]:
    """The model's labels, indexed by class id (placeholders included): the
    ``labels`` the settings give, else the model's own.

    Raises:
        LabelsError: the ``labels`` cannot be read.
        ModelFileError: a model file that names no labels of its own, or cannot be read.
    """
    if settings.labels is not None:
        return read_labels(settings.labels)
    if settings.file is not None:
        from detector.detection.families import file_labels

        return file_labels(settings)
    known = _known_labels(settings.backend, settings.model or "")
    if known is not None:
        return known
    # A Detectron2 config of another dataset: its test set's metadata says.
    from detector.detection.registry import detectron2_config_labels

    return detectron2_config_labels(settings)


def label_set(settings: DetectorSettings) -> Mapping[int, str]:
    """Class id -> label of every class the model can report."""
    return {i: name for i, name in enumerate(label_list(settings)) if name not in PLACEHOLDERS}


def identity_label_set(identity: str | None) -> Mapping[int, str] | None:
    """Class id -> label of the model an identity (``backend/model@weights``, see
    detector.detection.identity) names, when the identity alone tells them; None
    when it does not (another Detectron2 dataset's config, no identity at all)."""
    backend, _, rest = (identity or "").partition("/")
    model = rest.partition("@")[0]
    # A file model's identity (``backend/family:file@sha256:...``) does not tell its labels.
    known = _known_labels(backend, model) if rest and ":" not in model else None
    if known is None:
        return None
    return {i: name for i, name in enumerate(known) if name not in PLACEHOLDERS}


def stored_labels(labels: Mapping[int, str]) -> list[str | None]:
    """A label set as a job stores it: the labels indexed by class id, None at an id
    that is no class."""
    return [labels.get(i) for i in range(max(labels, default=-1) + 1)]


def from_stored(stored: Sequence[str | None]) -> dict[int, str]:
    """The label set ``stored_labels`` stored: class id -> label."""
    return {i: str(name) for i, name in enumerate(stored) if name is not None}
