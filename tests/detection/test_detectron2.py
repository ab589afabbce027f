"""The Detectron2 backend on the CPU, with seeded random weights (no download).

The model is the zoo's Faster R-CNN R50-FPN through a local config file that
lowers the test-time input size to 320 px and the proposals to 300 (the
defaults take seconds per frame on a small CPU); that also exercises the
local-config path.
"""

# ruff: noqa: E402  (Detectron2 is imported after require_detectron2)
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_detectron2

require_detectron2()  # before the imports below, which need Detectron2

import torch
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog
from detectron2.data.transforms import ResizeShortestEdge

from detector.detection import Detections, DetectorSettings, WeightsError, build_predictor, model_identity
from detector.detection.detectron2_backend import DEFAULT_MODEL, Detectron2Predictor
from detector.detection.identity import file_checksum
from detector.detection.weights import HOW_TO_PROVIDE
from detector.video.synthetic import frame_image

# Detectron2's anchor generator calls torch.meshgrid without `indexing`.
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")

MIN_SIZE, MAX_SIZE = 320, 533
MIN_SCORE = 0.05


def small_config(path: Path, zoo_config: str) -> str:
    """A local config at ``path``: the zoo's ``zoo_config`` at a 320 px input size, 300 proposals."""
    path.write_text(
        f'_BASE_: "{model_zoo.get_config_file(zoo_config)}"\n'
        f"INPUT:\n  MIN_SIZE_TEST: {MIN_SIZE}\n  MAX_SIZE_TEST: {MAX_SIZE}\n"
        "MODEL:\n  RPN:\n    POST_NMS_TOPK_TEST: 300\n"
    )
    return str(path)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local config: the zoo's default model, at a 320 px input size and with 300 proposals."""
    return small_config(tmp_path_factory.mktemp("config") / "faster_rcnn_320.yaml", DEFAULT_MODEL)


def settings(config_file: str, **overrides: Any) -> DetectorSettings:
    values: dict[str, Any] = {
        "backend": "detectron2",
        "model": config_file,
        "weights": "random",
        "device": "cpu",
        "min_score": MIN_SCORE,
        "seed": 0,
        "batch_size": 8,
    }
    values.update(overrides)
    return DetectorSettings(**values)


@pytest.fixture(scope="module")
def predictor(config_file: str) -> Detectron2Predictor:
    built = build_predictor(settings(config_file))
    assert isinstance(built, Detectron2Predictor)
    return built


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Eight 640x480 frames: the config resizes them to 427x320."""
    return [frame_image(i * 5, 640, 480) for i in range(8)]


@pytest.fixture(scope="module")
def batch_of_8(predictor: Detectron2Predictor, frames: list[np.ndarray]) -> list[list[dict[str, Any]]]:
    assert predictor.batch_size == 8
    return as_objects(predictor.predict(frames, 0.0))


def as_objects(found: Sequence[Detections]) -> list[list[dict[str, Any]]]:
    """Each frame's detections in their JSON form, as the assertions read them."""
    return [detections.to_objects() for detections in found]


def assert_same(a: Sequence[Sequence[dict[str, Any]]], b: Sequence[Sequence[dict[str, Any]]]) -> None:
    """Same detections: same count, classes and order; scores within 1e-4, boxes within 0.5 px."""
    assert len(a) == len(b)
    for objects_a, objects_b in zip(a, b, strict=True):
        assert len(objects_a) == len(objects_b)
        for x, y in zip(objects_a, objects_b, strict=True):
            assert (x["class_id"], x["label"]) == (y["class_id"], y["label"])
            assert x["score"] == pytest.approx(y["score"], abs=1e-4)
            assert np.allclose(x["box"], y["box"], atol=0.5)


def test_random_weights_give_varied_detections(config_file: str, predictor: Detectron2Predictor, batch_of_8):
    assert (
        predictor.name == model_identity(settings(config_file)) == f"detectron2/{config_file}@random(seed=0)"
    )
    assert predictor.device == "cpu"
    scores = np.array([o["score"] for objects in batch_of_8 for o in objects])
    assert all(objects for objects in batch_of_8)
    assert (scores > 0.3).any(), "random weights should give some confident detections"
    assert (scores < 0.5).any() and (scores > 0.5).any(), "scores should spread over (0, 1)"
    assert len({o["class_id"] for objects in batch_of_8 for o in objects}) > 3


def test_output_format(batch_of_8, frames: list[np.ndarray]):
    thing_classes = MetadataCatalog.get("coco_2017_val").thing_classes
    for objects, frame in zip(batch_of_8, frames, strict=True):
        height, width = frame.shape[:2]
        scores = [o["score"] for o in objects]
        assert scores == sorted(scores, reverse=True)
        for o in objects:
            assert set(o) == {"label", "class_id", "score", "box"}
            assert isinstance(o["label"], str) and isinstance(o["class_id"], int)
            assert isinstance(o["score"], float) and MIN_SCORE <= o["score"] <= 1.0
            assert len(o["box"]) == 4 and all(isinstance(v, float) for v in o["box"])
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
            assert 0 <= o["class_id"] < 80 and o["label"] == thing_classes[o["class_id"]]


def test_boxes_are_in_original_frame_pixels(predictor: Detectron2Predictor, batch_of_8):
    # The model sees these frames at 427x320; boxes past that are in frame pixels.
    boxes = np.array([o["box"] for objects in batch_of_8 for o in objects])
    assert boxes[:, 2].max() > 500 and boxes[:, 3].max() > 400

    # The same model input from a frame half the size: boxes exactly half as large.
    # `small` is upscaled 2x by the config's resize; `large` is that upscaled image,
    # which the resize leaves as it is.
    small = frame_image(3, 213, 160)
    large = ResizeShortestEdge(MIN_SIZE, MAX_SIZE).get_transform(small).apply_image(small)
    assert large.shape == (320, 426, 3)
    (objects_small,), (objects_large,) = (
        as_objects(predictor.predict([small], 0.0)),
        as_objects(predictor.predict([large], 0.0)),
    )
    assert len(objects_small) == len(objects_large) > 0
    assert max(o["box"][2] for o in objects_small) <= 213
    for s, big in zip(objects_small, objects_large, strict=True):
        assert s["class_id"] == big["class_id"] and s["score"] == pytest.approx(big["score"], abs=1e-5)
        assert np.allclose(np.array(s["box"]) * 2, big["box"], atol=0.05)


def test_frames_of_different_sizes_in_one_batch(predictor: Detectron2Predictor, batch_of_8, frames):
    square = frame_image(1, 300, 300)
    mixed = as_objects(predictor.predict([frames[0], square], 0.0))
    assert_same(mixed[:1], batch_of_8[:1])
    assert mixed[1]
    assert all(
        0 <= o["box"][0] <= o["box"][2] <= 300 and 0 <= o["box"][1] <= o["box"][3] <= 300 for o in mixed[1]
    )


def test_rgb_config_gets_rgb_frames(predictor: Detectron2Predictor, frames, monkeypatch):
    # A BGR model given a channel-swapped frame sees what an RGB model sees of the frame.
    swapped = np.ascontiguousarray(frames[0][..., ::-1])
    as_bgr = predictor.predict([swapped], 0.0)
    monkeypatch.setattr(predictor, "input_format", "RGB")
    assert predictor.predict([frames[0]], 0.0) == as_bgr


def test_score_threshold_filters(predictor: Detectron2Predictor, batch_of_8, frames):
    above = as_objects(predictor.predict(frames[:2], 0.5))
    for high, everything in zip(above, batch_of_8[:2], strict=True):
        expected = [o for o in everything if o["score"] >= 0.5]
        assert 0 < len(expected) < len(everything)
        assert_same([high], [expected])


def test_batch_of_one_matches_batch_of_eight(predictor, batch_of_8, frames, monkeypatch):
    monkeypatch.setattr(predictor, "batch_size", 1)
    assert_same(as_objects(predictor.predict(frames, 0.0)), batch_of_8)


def test_saved_random_weights_load_from_file(config_file: str, predictor, frames, tmp_path: Path):
    DetectionCheckpointer(predictor.model, save_dir=str(tmp_path)).save("seeded")
    path = tmp_path / "seeded.pth"
    assert path.is_file()
    loaded = build_predictor(settings(config_file, weights=str(path), seed=123))
    assert isinstance(loaded, Detectron2Predictor)
    for name, tensor in predictor.model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    assert loaded.predict(frames[:1], 0.0) == predictor.predict(frames[:1], 0.0)
    assert loaded.name == f"detectron2/{config_file}@sha256:{file_checksum(path)}"
    path.unlink()  # a large file


def test_same_seed_same_weights(config_file: str, predictor):
    again = build_predictor(settings(config_file))
    assert isinstance(again, Detectron2Predictor)
    state = again.model.state_dict()
    for name, tensor in predictor.model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_default_weights_without_network_say_how_to_provide_them(tmp_path: Path, monkeypatch):
    def no_network(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError) as error:
        build_predictor(settings(DEFAULT_MODEL, weights="default", cache_dir=str(tmp_path)))
    message = str(error.value)
    assert model_zoo.get_checkpoint_url(DEFAULT_MODEL) in message and "network is unreachable" in message
    assert HOW_TO_PROVIDE in message


def test_local_config_has_no_default_weights(config_file: str):
    with pytest.raises(WeightsError, match="no default weights"):
        build_predictor(settings(config_file, weights="default"))


def test_missing_weights_file(config_file: str, tmp_path: Path):
    with pytest.raises(WeightsError, match="does not exist") as error:
        build_predictor(settings(config_file, weights=str(tmp_path / "nope.pth")))
    assert HOW_TO_PROVIDE in str(error.value)


def test_weights_that_do_not_fit_the_model(config_file: str, tmp_path: Path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"backbone.something.weight": torch.zeros(3)}}, path)
    with pytest.raises(WeightsError, match="does not fit"):
        build_predictor(settings(config_file, weights=str(path)))


def test_unknown_config():
    with pytest.raises(ValueError, match="model-zoo config"):
        build_predictor(settings("COCO-Detection/no_such_model.yaml"))


MASK_RCNN = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"


@pytest.fixture(scope="module")
def mask_rcnn_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The zoo's Mask R-CNN R50-FPN at a 320 px input and 300 proposals."""
    return small_config(tmp_path_factory.mktemp("config") / "mask_rcnn_320.yaml", MASK_RCNN)


def test_a_mask_rcnn_runs_without_its_mask_head_and_finds_the_same_boxes(mask_rcnn_file: str, frames):
    """Only boxes are kept, so the mask head is never built nor run (the 2021 prototype
    computed every mask and threw it away); the boxes are those of the whole model."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    predictor = Detectron2Predictor(settings(mask_rcnn_file), "cpu")
    assert predictor.cfg.MODEL.MASK_ON is False
    assert not hasattr(predictor.model.roi_heads, "mask_head")

    cfg = get_cfg()
    cfg.merge_from_file(mask_rcnn_file)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = MIN_SCORE
    assert cfg.MODEL.MASK_ON  # the config as written has masks
    whole = build_model(cfg).eval()
    missing, unexpected = whole.load_state_dict(predictor.model.state_dict(), strict=False)
    assert missing and all(key.startswith("roi_heads.mask_head.") for key in missing)
    assert not unexpected

    with torch.inference_mode():
        outputs = whole(
            [
                {
                    "image": torch.from_numpy(image.transpose(2, 0, 1).copy()).float(),
                    "height": 480,
                    "width": 640,
                }
                for image in (predictor.resize.get_transform(f).apply_image(f) for f in frames[:4])
            ]
        )
    assert all(out["instances"].has("pred_masks") for out in outputs)
    assert_same(
        as_objects(predictor.predict_batch(frames[:4])),
        as_objects([predictor._objects(out) for out in outputs]),
    )
