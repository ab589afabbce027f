"""DETECTOR_BATCH_SIZE: a whole number, or ``auto`` (the default), the device's own size."""

from __future__ import annotations

import pytest

from detector.config import load_config
from detector.detection import DetectorSettings, build_predictor
from detector.detection.base import CPU_BATCH_PIXELS, GPU_BATCH_SIZE, default_batch_size


def test_auto_is_the_default_everywhere(monkeypatch):
    monkeypatch.delenv("DETECTOR_BATCH_SIZE", raising=False)
    assert load_config()["DETECTOR_BATCH_SIZE"] == "auto"
    assert DetectorSettings().batch_size == "auto"
    assert DetectorSettings.from_config({}).batch_size == "auto"


def test_auto_is_8_on_a_gpu_and_on_the_cpu_what_fits_the_pixel_budget():
    assert default_batch_size("cuda:0") == default_batch_size("cuda:3") == GPU_BATCH_SIZE == 8
    assert default_batch_size("cuda:0", (800, 1333)) == 8
    assert CPU_BATCH_PIXELS == 8 * 320 * 640
    assert default_batch_size("cpu", (320, 640)) == 8  # the 320 px MobileNet
    assert default_batch_size("cpu", (480, 640)) == 5
    assert default_batch_size("cpu", (800, 1333)) == 1  # the 800 px models
    assert default_batch_size("cpu", (96, 160)) == 8  # never more than a GPU's batch
    assert default_batch_size("cpu") == 1  # input size unknown
    settings = DetectorSettings.from_config({"DETECTOR_BATCH_SIZE": " Auto "})
    assert settings.batch_size == "auto"
    assert settings.batch_size_on("cpu", (800, 1333)) == 1
    assert settings.batch_size_on("cuda:1", (320, 640)) == GPU_BATCH_SIZE


@pytest.mark.parametrize(("value", "size"), [("4", 4), (4, 4), ("1", 1), (16, 16)])
def test_a_number_is_kept_on_any_device(value, size):
    settings = DetectorSettings.from_config({"DETECTOR_BATCH_SIZE": value})
    assert settings.batch_size == size
    assert settings.batch_size_on("cpu") == settings.batch_size_on("cuda:0") == size


@pytest.mark.parametrize("value", ["0", -2, "eight", "2.5x"])
def test_anything_else_is_refused(value):
    with pytest.raises(ValueError, match="DETECTOR_BATCH_SIZE"):
        DetectorSettings.from_config({"DETECTOR_BATCH_SIZE": value})


def test_a_predictor_built_with_auto_on_the_cpu_batches_at_the_cpus_size():
    settings = DetectorSettings(model="fasterrcnn_mobilenet_v3_large_320_fpn", weights="random", device="cpu")
    assert build_predictor(settings).batch_size == 8  # 320 px
    large = DetectorSettings(model="fasterrcnn_mobilenet_v3_large_fpn", weights="random", device="cpu")
    assert build_predictor(large).batch_size == 1  # 800 px
    pinned = DetectorSettings(
        model="fasterrcnn_mobilenet_v3_large_320_fpn", weights="random", device="cpu", batch_size=5
    )
    assert build_predictor(pinned).batch_size == 5
