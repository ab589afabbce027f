"""The label sets the API knows without a model equal what the libraries give the models."""

from __future__ import annotations

from detector.detection import DetectorSettings
from detector.detection.labels import DETECTRON2_COCO, TORCHVISION_COCO, label_list, label_set
from tests.conftest import require_detectron2


def test_torchvision_labels_are_the_weights_categories() -> None:
    from detector.detection.identity import TORCHVISION_CHECKPOINTS
    from detector.detection.torchvision_models import categories

    for name in TORCHVISION_CHECKPOINTS:
        assert list(TORCHVISION_COCO) == categories(name), name
    assert label_list(DetectorSettings(backend="torchvision")) == list(TORCHVISION_COCO)


def test_detectron2_labels_are_the_coco_thing_classes() -> None:
    require_detectron2()
    from detectron2.data import MetadataCatalog
    from detectron2.data.datasets import builtin  # noqa: F401  (registers the COCO sets)

    assert list(DETECTRON2_COCO) == list(MetadataCatalog.get("coco_2017_val").thing_classes)


def test_label_set_leaves_out_placeholders_and_keeps_the_model_ids() -> None:
    labels = label_set(DetectorSettings(backend="torchvision"))
    assert labels[1] == "person" and labels[3] == "car"
    assert 0 not in labels and 12 not in labels  # __background__, N/A
    assert len(labels) == 80
    d2 = label_set(
        DetectorSettings(backend="detectron2", model="COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml")
    )
    assert d2[0] == "person" and d2[2] == "car" and len(d2) == 80
