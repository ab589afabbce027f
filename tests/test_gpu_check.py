"""The GPU check (detector/bench/gpu.py) runs each of its sections, and says which
measurements a machine without CUDA skips; a real run needs a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detector.bench import gpu
from tests.conftest import require_detectron2
from tests.shared_data import SharedData

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_smoke_run_runs_every_section_and_says_what_it_skipped(
    tmp_path: Path, testdata: SharedData
) -> None:
    require_detectron2()
    out = tmp_path / "gpu-check"
    argv = [sys.executable, "-m", "detector.bench.gpu", "--smoke", "--out", str(out)]
    argv += ["--ssd", str(testdata.ssd_onnx), "--ssd-labels", str(testdata.labels)]
    # No CUDA, even on a machine with a GPU: the CPU path and its skips are what is checked.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["machine"]["gpu"] is None
    results = report["results"]
    assert set(results) == set(gpu.SECTIONS)

    detectron2 = results["detectron2"]
    assert detectron2["device"] == "cpu" and detectron2["model"].startswith("detectron2/")
    assert detectron2["fp16"] == gpu.NO_CUDA
    assert set(detectron2["fp32"]) == {"1", "2"}
    for measured in detectron2["fp32"].values():
        assert measured["frames_per_s"] > 0 and measured["objects_per_frame"] > 0
        assert measured["gpu_memory"] == gpu.NO_CUDA

    for model in ("torchvision", "ssd"):
        providers = results["onnxruntime"][model]["providers"]
        assert providers["CUDAExecutionProvider"] == providers["TensorrtExecutionProvider"] == gpu.NO_CUDA
        cpu = providers["CPUExecutionProvider"]
        assert cpu["frames_per_s"] > 0 and cpu["session_providers"] == ["CPUExecutionProvider"]
    assert results["onnxruntime"]["ssd"]["model"].startswith("onnxruntime/ssd:")

    render = results["render"]
    assert render["h264_nvenc"] == gpu.NO_CUDA and render["libx264"]["frames_per_s"] > 0
    assert (out / "render-libx264.mp4").stat().st_size > 0

    pipeline = results["pipeline"]
    assert pipeline["device"] == "cpu" and pipeline["frames"] == gpu.SMOKE.pipeline_frames
    assert pipeline["predict_fps"] > 0 and pipeline["job_fps"] > 0

    assert "detectron2 fp16: skipped: no CUDA" in run.stdout
    assert "render h264_nvenc: skipped: no CUDA" in run.stdout
    assert "onnxruntime ssd providers CUDAExecutionProvider: skipped: no CUDA" in run.stdout


def test_a_failing_section_is_reported_and_the_others_still_run(tmp_path: Path, monkeypatch) -> None:
    def broken(check: gpu.GpuCheck) -> dict:
        raise RuntimeError("the driver went away")

    monkeypatch.setattr(gpu, "detectron2_figure", broken)
    monkeypatch.setattr(gpu, "render_figure", lambda check: {"libx264": {"frames_per_s": 1.0}})
    check = gpu.GpuCheck(
        out=tmp_path, sizes=gpu.SMOKE, sections=("detectron2", "render"), log=lambda line: None
    )
    report = gpu.run(check)
    assert report["results"]["detectron2"] == {"error": "RuntimeError: the driver went away"}
    assert report["results"]["render"] == {"libx264": {"frames_per_s": 1.0}}
    assert json.loads((tmp_path / "gpu-check.json").read_text())["results"] == report["results"]
    assert "detectron2 error: RuntimeError: the driver went away" in gpu.format_report(report).splitlines()


def test_an_unknown_section_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        gpu.main(["--sections", "detectron2,warp-drive"])
    assert exited.value.code == 2 and "unknown section 'warp-drive'" in capsys.readouterr().err
