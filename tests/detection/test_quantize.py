"""INT8 models on OpenVINO (``precision = "int8"``): the settings and catalog keys, the
identity a job records, and on the shared SSD an INT8 copy built from a few calibration
frames that finds what the FP32 model finds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.bench.precision import average_precision, write_calibration
from detector.bench.realvideo import agreement, sampled_frames
from detector.detection import DetectorSettings, build_predictor, model_identity
from detector.detection.base import WeightsError
from detector.detection.catalog import CatalogError, catalog_from
from detector.detection.quantize import calibration_frames, int8_path
from tests.shared_data import SharedData


def int8_settings(file: Path, calibration: Path, **more: object) -> DetectorSettings:
    return DetectorSettings(
        backend="openvino",
        file=str(file),
        family="ssd",
        precision="int8",
        calibration=str(calibration),
        **more,  # type: ignore[arg-type]
    )


def write_frames(folder: Path, count: int, size: tuple[int, int] = (32, 24)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((size[1], size[0], 3), 10 * i, dtype=np.uint8))
    return folder


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backend": "onnxruntime", "file": "m.onnx", "family": "ssd"}, "model file on backend"),
        ({"backend": "openvino"}, "without a file"),
        (
            {"backend": "openvino", "file": "m.onnx", "family": "ssd", "calibration": None},
            "needs calibration",
        ),
        ({"precision": "int4"}, "precision must be one of fp32, int8"),
    ],
)
def test_int8_is_for_a_model_file_on_openvino_with_calibration(values, message):
    settings = {"precision": "int8", "calibration": "frames/", **values}
    with pytest.raises(ValueError, match=message):
        DetectorSettings(**settings)  # type: ignore[arg-type]


def test_calibration_without_int8_is_refused():
    with pytest.raises(ValueError, match="calibration is for precision"):
        DetectorSettings(backend="openvino", file="m.onnx", family="ssd", calibration="frames/")


def test_the_identity_names_the_precision_and_the_calibration_frames(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    frames = write_frames(tmp_path / "frames", 2)
    fp32 = DetectorSettings(backend="openvino", file=str(model), family="ssd")
    int8 = int8_settings(model, frames)
    first = model_identity(int8)
    assert first.startswith(model_identity(fp32) + "+int8(calibration=sha256:")
    assert len(first.rsplit("sha256:", 1)[1]) == len("0123456789abcdef)")
    write_frames(tmp_path / "frames", 3)  # one more frame: another model
    assert model_identity(int8) != first
    video = tmp_path / "v.avi"
    video.write_bytes(b"a video")
    assert model_identity(replace(int8, calibration=str(video))) not in (first, model_identity(int8))
    with pytest.raises(WeightsError, match="is neither a video nor a folder"):
        model_identity(replace(int8, calibration=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"has no \.jpg"):
        model_identity(replace(int8, calibration=str(tmp_path / "empty")))


def test_calibration_frames_are_spread_over_the_folder(tmp_path):
    folder = write_frames(tmp_path / "frames", 10)
    frames = calibration_frames(folder, count=4)
    # every third image of ten: 0, 3, 6, 9
    assert [int(f[0, 0, 0]) for f in frames] == [0, 30, 60, 90]
    assert len(calibration_frames(folder)) == 10


def test_calibration_frames_are_spread_over_the_video(testdata: SharedData):
    frames = calibration_frames(testdata.video, count=4)  # 795 frames: every 199th
    assert len(frames) == 4 and frames[0].shape == (576, 768, 3)
    assert not np.array_equal(frames[1], frames[2])


def test_the_catalog_reads_calibration_relative_to_its_file(tmp_path):
    declared = {
        "models": {
            "q": {
                "backend": "openvino",
                "file": "m.onnx",
                "family": "ssd",
                "precision": "int8",
                "calibration": "frames",
            }
        }
    }
    catalog = catalog_from(declared, {}, where="models.toml", folder=tmp_path, check_files=False)
    assert catalog.settings("q").calibration == str(tmp_path / "frames")
    assert catalog.settings("q").precision == "int8"


def test_the_catalog_refuses_missing_calibration_frames(testdata: SharedData, tmp_path):
    table = {
        "backend": "openvino",
        "file": str(testdata.ssd_onnx),
        "family": "ssd",
        "labels": str(testdata.labels),
        "precision": "int8",
        "calibration": "nowhere",
    }
    with pytest.raises(CatalogError, match=r"\[models.q\]: calibration .*nowhere is neither"):
        catalog_from({"models": {"q": table}}, {}, where="models.toml", folder=tmp_path)


#: Measured on these 8 frames of vtest.avi (every 100th), the INT8 model calibrated on 8
#: others: 72 of FP32's 73 objects at 0.3 matched at IoU 0.5 (97.3 %), AP50 against FP32
#: 0.9996 (docs/performance.md has the whole video). Floors a little below those.
MIN_MATCH_RATE = 0.9
MIN_AP = 0.95


def test_an_int8_ssd_from_a_few_frames_finds_what_fp32_finds(testdata: SharedData, tmp_path):
    calibration = write_calibration(testdata.video, tmp_path / "calibration", 100, 50)
    assert len(list(calibration.glob("*.png"))) == 8
    fp32 = DetectorSettings(
        backend="openvino",
        file=str(testdata.ssd_onnx),
        family="ssd",
        labels=str(testdata.labels),
        device="cpu",
        min_score=0.05,
        cache_dir=str(tmp_path / "cache"),
    )
    int8 = replace(fp32, precision="int8", calibration=str(calibration))
    predictor = build_predictor(int8)
    assert predictor.name == model_identity(int8) and "+int8(calibration=sha256:" in predictor.name
    built = int8_path(int8, testdata.ssd_onnx)
    assert built.is_file() and built.with_suffix(".bin").is_file()
    assert b"FakeQuantize" in built.read_bytes() or b"i8" in built.read_bytes()
    frames = [image for _, image in sampled_frames(testdata.video, 100)]
    found = predictor.predict(frames, 0.05)
    reference = [d[d.score >= 0.3] for d in build_predictor(fp32).predict(frames, 0.3)]
    assert sum(len(d) for d in reference) >= 30  # people on every frame
    matched = agreement(reference, [d[d.score >= 0.3] for d in found])
    assert matched["match_rate"] >= MIN_MATCH_RATE, matched
    assert average_precision(reference, found)["ap"] >= MIN_AP
    assert build_predictor(int8).name == predictor.name  # built again from the cached file
