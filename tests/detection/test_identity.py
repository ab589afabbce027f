"""``model_identity``: which model and weights a job runs, known without building the model."""

from __future__ import annotations

import builtins
import hashlib
import os
from pathlib import Path

import pytest

from detector.detection import DetectorSettings, WeightsError, identity, model_identity
from tests.conftest import require_detectron2


def test_torchvision_default():
    assert model_identity(DetectorSettings()) == (
        "torchvision/fasterrcnn_mobilenet_v3_large_fpn@fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    )


def test_torchvision_model_with_default_weights():
    settings = DetectorSettings(model="fasterrcnn_resnet50_fpn")
    assert (
        model_identity(settings)
        == "torchvision/fasterrcnn_resnet50_fpn@fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    )


def test_the_listed_torchvision_checkpoints_are_torchvisions():
    from torchvision.models import detection, get_model_weights

    assert identity.TORCHVISION_DEFAULT_MODEL in identity.TORCHVISION_CHECKPOINTS
    for name, url in identity.TORCHVISION_CHECKPOINTS.items():
        assert callable(getattr(detection, name)), name
        assert get_model_weights(name).COCO_V1.url == url, name


def test_detectron2_default():
    settings = DetectorSettings(backend="detectron2")
    assert (
        model_identity(settings)
        == "detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml@model_final_280758.pkl"
    )


def test_the_listed_detectron2_checkpoint_is_the_zoos():
    require_detectron2()
    from detectron2 import model_zoo

    url = model_zoo.get_checkpoint_url(identity.DETECTRON2_DEFAULT_MODEL)
    assert url == identity.DETECTRON2_DEFAULT_CHECKPOINT


def test_detectron2_other_zoo_config_says_default():
    settings = DetectorSettings(backend="detectron2", model="COCO-Detection/retinanet_R_50_FPN_3x.yaml")
    assert model_identity(settings) == "detectron2/COCO-Detection/retinanet_R_50_FPN_3x.yaml@default"


def test_random_weights_name_their_seed():
    assert model_identity(DetectorSettings(weights="random", seed=7)) == (
        "torchvision/fasterrcnn_mobilenet_v3_large_fpn@random(seed=7)"
    )
    settings = DetectorSettings(backend="detectron2", model="/configs/small.yaml", weights="random")
    assert model_identity(settings) == "detectron2//configs/small.yaml@random(seed=0)"


def test_url_weights_are_the_url():
    url = "https://example.com/models/mine-0123abcd.pth"
    assert (
        model_identity(DetectorSettings(weights=url))
        == f"torchvision/fasterrcnn_mobilenet_v3_large_fpn@{url}"
    )


def test_local_file_is_a_checksum_of_its_content(tmp_path: Path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"some weights")
    expected = hashlib.sha256(b"some weights").hexdigest()[: identity.CHECKSUM_DIGITS]
    assert model_identity(DetectorSettings(weights=str(path))) == (
        f"torchvision/fasterrcnn_mobilenet_v3_large_fpn@sha256:{expected}"
    )
    copy = tmp_path / "copy.pth"
    copy.write_bytes(b"some weights")
    assert identity.file_checksum(copy) == expected, "same content, same identity, whatever the name"


def test_checksum_is_not_recomputed_for_an_unchanged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"x" * 100_000)
    first = identity.file_checksum(path)
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    assert identity.file_checksum(path) == first
    assert str(path) not in opened

    # Same size, new content and modification time: read again.
    path.write_bytes(b"y" * 100_000)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert (
        identity.file_checksum(path) == hashlib.sha256(b"y" * 100_000).hexdigest()[: identity.CHECKSUM_DIGITS]
    )
    assert str(path) in opened


def test_missing_local_file_is_a_weights_error(tmp_path: Path):
    with pytest.raises(WeightsError, match="does not exist"):
        model_identity(DetectorSettings(weights=str(tmp_path / "nope.pth")))


def test_unknown_torchvision_model():
    with pytest.raises(ValueError, match="unknown torchvision model"):
        model_identity(DetectorSettings(model="yolo"))


def test_settings_from_config_give_the_same_identity_as_the_settings():
    config = {"DETECTOR_BACKEND": "torchvision", "DETECTOR_MODEL": None, "DETECTOR_WEIGHTS": "random"}
    assert model_identity(DetectorSettings.from_config(config)) == model_identity(
        DetectorSettings(weights="random")
    )
