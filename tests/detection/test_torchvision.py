"""The torchvision backend: weights from a file, seeded random weights, no silent fallback."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from detector.detection import DetectorSettings, WeightsError, build_predictor, model_identity
from detector.detection.identity import TORCHVISION_CHECKPOINTS, file_checksum
from detector.detection.torchvision_backend import TorchvisionPredictor
from detector.detection.weights import HOW_TO_PROVIDE
from detector.video.synthetic import frame_image

MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"


def settings(**overrides: Any) -> DetectorSettings:
    values: dict[str, Any] = {
        "model": MODEL,
        "weights": "random",
        "device": "cpu",
        "batch_size": 4,
        "seed": 0,
    }
    values.update(overrides)
    return DetectorSettings(**values)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [frame_image(i * 4, 320, 240) for i in range(4)]


def test_seeded_random_weights_are_deterministic_and_give_varied_scores(frames):
    predictor = build_predictor(settings())
    assert isinstance(predictor, TorchvisionPredictor)
    assert predictor.name == model_identity(settings()) == f"torchvision/{MODEL}@random(seed=0)"
    first = predictor.predict(frames, 0.0)
    second = build_predictor(settings()).predict(frames, 0.0)
    assert first == second
    scores = [o["score"] for objects in first for o in objects.to_objects()]
    assert len(set(scores)) > 10
    assert max(scores) > 0.3
    other_seed = build_predictor(settings(seed=1)).predict(frames, 0.0)
    assert other_seed != first


def test_weights_saved_to_a_file_load_through_the_real_path(tmp_path, frames):
    random_built = build_predictor(settings())
    path = tmp_path / "seeded.pth"
    torch.save(random_built.model.state_dict(), path)  # type: ignore[attr-defined]
    from_file = build_predictor(settings(weights=str(path), seed=99))
    assert from_file.predict(frames, 0.0) == random_built.predict(frames, 0.0)
    assert (
        from_file.name
        == model_identity(settings(weights=str(path)))
        == (f"torchvision/{MODEL}@sha256:{file_checksum(path)}")
    )


def test_default_weights_from_the_cache_are_named_by_their_checkpoint(tmp_path: Path, monkeypatch):
    """The name a job gets at creation (no model built) is the built predictor's name."""
    url = TORCHVISION_CHECKPOINTS[MODEL]
    cached = tmp_path / hashlib.sha256(url.encode()).hexdigest()[:12] / Path(url).name
    cached.parent.mkdir()
    torch.save(build_predictor(settings()).model.state_dict(), cached)  # type: ignore[attr-defined]

    def no_download(*_args, **_kwargs):
        raise AssertionError("the cached checkpoint should be used")

    monkeypatch.setattr("torch.hub.download_url_to_file", no_download)
    default = settings(weights="default", cache_dir=str(tmp_path))
    predictor = build_predictor(default)
    assert predictor.name == model_identity(default) == f"torchvision/{MODEL}@{MODEL}-907ea3f9.pth"


def test_objects_are_well_formed_and_inside_the_frame(frames):
    for objects in build_predictor(settings()).predict(frames, 0.2):
        for o in objects.to_objects():
            assert set(o) == {"label", "class_id", "score", "box"}
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 240
            assert 0.2 <= o["score"] <= 1
            assert isinstance(o["label"], str) and o["label"]


def test_missing_weights_file_is_a_clear_error():
    with pytest.raises(WeightsError, match="does not exist"):
        build_predictor(settings(weights="/nonexistent/weights.pth"))


def test_no_internet_and_no_opt_in_fails_with_how_to_provide(monkeypatch, tmp_path):
    def offline(*_args, **_kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    with pytest.raises(WeightsError) as error:
        build_predictor(settings(weights="default", cache_dir=str(tmp_path)))
    assert HOW_TO_PROVIDE in str(error.value)
    assert "could not download" in str(error.value)


def test_large_frames_are_shrunk_on_the_host_and_boxes_come_back_in_frame_pixels():
    """A frame twice the model's input size, made by doubling every pixel of a
    small one, shrinks back to exactly that small frame: the detections must be
    the small frame's, with every box twice as large."""
    import cv2

    predictor = build_predictor(settings())
    small = frame_image(8, 568, 320)  # the 320-pixel model's own input size: not resized
    big = cv2.resize(small, (1136, 640), interpolation=cv2.INTER_NEAREST)
    seen: list[tuple[int, ...]] = []
    predictor.model.transform.register_forward_pre_hook(  # type: ignore[attr-defined]
        lambda _module, args: seen.extend(tuple(image.shape) for image in args[0])
    )
    expected = predictor.predict([small], 0.0)[0].to_objects()
    got = predictor.predict([big], 0.0)[0].to_objects()
    assert seen == [(3, 320, 568), (3, 320, 568)]  # the model never saw the big frame
    assert len(got) == len(expected) > 10
    for g, e in zip(got, expected, strict=True):
        assert (g["label"], g["class_id"]) == (e["label"], e["class_id"])
        assert g["score"] == pytest.approx(e["score"], abs=1e-5)
        assert g["box"] == pytest.approx([2 * v for v in e["box"]], abs=0.02)
