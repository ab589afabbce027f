"""The label sets of the models: which class id means which object.

Known without building the model (the API lists them and checks a job's
``classes`` without torch): torchvision's COCO detectors number the 91 ids of
the original COCO release, with ``__background__`` at 0 and ``N/A`` where COCO
retired an id; Detectron2's COCO models number the 80 real classes from 0.
tests/detection/test_labels.py checks both against the libraries themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

from detector.detection.base import DetectorSettings

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


def label_list(settings: DetectorSettings) -> list[str]:
    """The model's labels, indexed by class id (placeholders included)."""
    if settings.backend in ("torchvision", "onnxruntime", "openvino"):
        return list(TORCHVISION_COCO)
    model = settings.model or ""
    if settings.backend == "detectron2" and (not model or model.startswith("COCO-")):
        return list(DETECTRON2_COCO)
    # A Detectron2 config of another dataset: its test set's metadata says.
    from detector.detection.registry import detectron2_config_labels

    return detectron2_config_labels(settings)


def label_set(settings: DetectorSettings) -> Mapping[int, str]:
    """Class id -> label of every class the model can report."""
    return {i: name for i, name in enumerate(label_list(settings)) if name not in PLACEHOLDERS}
