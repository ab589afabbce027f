"""The `detector` command as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from detector.cli import main
from tests.conftest import base_config
from tests.pipeline.conftest import TEST_MODEL, worker_env


@pytest.fixture
def model_env(monkeypatch):
    for key, value in {
        "DETECTOR_MODEL": TEST_MODEL,
        "DETECTOR_WEIGHTS": "random",
        "DETECTOR_DEVICE": "cpu",
        "DETECTOR_BATCH_SIZE": "4",
    }.items():
        monkeypatch.setenv(key, value)


def test_predict_writes_the_detections_page_format(tmp_path, small_video, model_env):
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        main, ["predict", str(small_video), "--out", str(out), "--score-threshold", "0.2"]
    )
    assert result.exit_code == 0, result.output
    page = json.loads(out.read_text())
    assert set(page) == {"job_id", "frames_total", "start", "limit", "next_start", "frames"}
    assert [f["frame"] for f in page["frames"]] == list(range(20))
    assert page["frames"][10]["timestamp"] == pytest.approx(1.0)
    assert all(o["score"] >= 0.2 for f in page["frames"] for o in f["objects"])
    assert "frames/s" in result.output


def test_predict_refuses_a_file_that_is_not_a_video(tmp_path, model_env):
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello")
    result = CliRunner().invoke(main, ["predict", str(bad)])
    assert result.exit_code != 0
    assert "not a readable video container" in str(result.exception)


@pytest.mark.slow
def test_up_serves_and_stops_cleanly_on_ctrl_c(tmp_path):
    config = base_config(tmp_path)
    env = worker_env(config)
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "detector.cli", "up", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "detector up did not become ready"
            time.sleep(0.5)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 3  # API, processor worker, detector worker
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize(("env", "expected"), [({}, (os.cpu_count() or 1) + 1), ({"API_WORKERS": "7"}, 7)])
def test_api_runs_sync_gunicorn_workers(monkeypatch, env, expected):
    started = {}
    monkeypatch.delenv("API_WORKERS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(os, "execvp", lambda path, argv: started.update(argv=argv))
    result = CliRunner().invoke(main, ["api", "--port", "8123"])
    assert result.exit_code == 0, result.output
    argv = started["argv"]
    assert argv[argv.index("--workers") + 1] == str(expected)
    assert "--worker-class" not in argv  # sync: see `detector api --help`
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:8123"


def test_make_video_writes_a_video_the_service_accepts(tmp_path):
    from detector.video import probe

    out = tmp_path / "made.mp4"
    result = CliRunner().invoke(
        main, ["make-video", str(out), "--frames", "12", "--width", "160", "--height", "96"]
    )
    assert result.exit_code == 0, result.output
    info = probe(out)
    assert (info.width, info.height, info.codec) == (160, 96, "h264")


def test_predict_refuses_a_threshold_below_the_models_floor(small_video, model_env, monkeypatch):
    monkeypatch.setenv("DETECTOR_MIN_SCORE", "0.05")
    result = CliRunner().invoke(main, ["predict", str(small_video), "--score-threshold", "0.01"])
    assert result.exit_code == 2
    assert "below the model's score floor DETECTOR_MIN_SCORE (0.05)" in result.output
