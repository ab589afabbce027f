"""The `detector` command as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click.testing
import pytest
import requests
from click.testing import CliRunner

from detector.cli import main
from detector.cli.common import LOCAL_CPU_BACKEND, local_backend
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


@pytest.fixture
def no_backend_named(monkeypatch, tmp_path):
    """An environment that names no backend, in a folder without a .env."""
    for key in ("DETECTOR_BACKEND", "DETECTOR_MODELS", "DETECTOR_DEVICE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("detector.cli.common.load_env_file", lambda: None)
    monkeypatch.setattr("detector.detection.devices.cuda_device_count", lambda: 0)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "gpus", "expected"),
    [
        ({}, 0, LOCAL_CPU_BACKEND),
        ({"DETECTOR_DEVICE": "cpu"}, 1, LOCAL_CPU_BACKEND),
        ({}, 1, {}),  # auto, and there is a GPU: the configured backend runs on it
        ({"DETECTOR_DEVICE": "cuda"}, 0, {}),
        ({"DETECTOR_BACKEND": "torchvision"}, 0, {}),  # named: kept
        ({"DETECTOR_MODELS": "models.toml"}, 0, {}),  # a catalog names its own
    ],
)
def test_commands_on_this_machine_run_torchvision_on_openvino_without_a_gpu(
    no_backend_named, env, gpus, expected
):
    for key, value in env.items():
        no_backend_named.setenv(key, value)
    no_backend_named.setattr("detector.detection.devices.cuda_device_count", lambda: gpus)
    assert local_backend() == expected


def test_predict_runs_the_unnamed_backend_on_openvino_on_a_cpu_machine(no_backend_named, small_video):
    for key, value in {"DETECTOR_MODEL": TEST_MODEL, "DETECTOR_WEIGHTS": "random"}.items():
        no_backend_named.setenv(key, value)
    result = CliRunner().invoke(main, ["predict", str(small_video), "--score-threshold", "0.2"])
    assert result.exit_code == 0, result.output
    assert f"openvino/{TEST_MODEL}@random(seed=0) on cpu" in result.output
    no_backend_named.setenv("DETECTOR_BACKEND", "torchvision")
    result = CliRunner().invoke(main, ["predict", str(small_video), "--score-threshold", "0.2"])
    assert result.exit_code == 0, result.output
    assert f"torchvision/{TEST_MODEL}@random(seed=0) on cpu" in result.output


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
        assert len(children) == 4  # API, processor, detector and render workers
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
    assert "below the model's score floor 0.05 (its min_score, else DETECTOR_MIN_SCORE)" in result.output


# --- detector predict with the job options ---


def _predict(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, ["predict", *args], catch_exceptions=False)


def _page(path: Path) -> dict:
    return json.loads(path.read_text())


def test_predict_sample_fps_and_a_span_give_only_those_frames_with_their_own_indices(
    tmp_path, small_video, model_env, monkeypatch
):
    """small_video is 20 frames at 10 fps. Each frame is inferred alone (batch 1), so a
    sampled frame's objects are exactly those the same frame has in a full run."""
    monkeypatch.setenv("DETECTOR_BATCH_SIZE", "1")
    full = tmp_path / "full.json"
    assert _predict(str(small_video), "--out", str(full), "--score-threshold", "0.2").exit_code == 0
    by_frame = {f["frame"]: f for f in _page(full)["frames"]}
    assert sum(len(f["objects"]) for f in by_frame.values()) > 0

    sampled = tmp_path / "sampled.json"
    result = _predict(
        str(small_video), "--out", str(sampled), "--score-threshold", "0.2", "--sample-fps", "2.5"
    )
    assert result.exit_code == 0, result.output
    page = _page(sampled)
    assert [f["frame"] for f in page["frames"]] == [0, 4, 8, 12, 16]
    assert page["frames_total"] == 5
    assert [f["timestamp"] for f in page["frames"]] == pytest.approx([0.0, 0.4, 0.8, 1.2, 1.6])
    assert page["frames"] == [by_frame[f["frame"]] for f in page["frames"]]
    assert "5 of 20 frames" in result.output

    span = tmp_path / "span.json"
    result = _predict(
        str(small_video), "--out", str(span), "--score-threshold", "0.2",
        "--frame-stride", "6", "--start", "0.5", "--end", "1.7",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [f["frame"] for f in _page(span)["frames"]] == [5, 11]
    assert _page(span)["frames"] == [by_frame[5], by_frame[11]]


def test_predict_coco_output_loads_with_pycocotools(tmp_path, small_video, model_env):
    from pycocotools.coco import COCO

    page_path, coco_path = tmp_path / "page.json", tmp_path / "out.coco.json"
    options = ["--score-threshold", "0.2", "--frame-stride", "3"]
    assert _predict(str(small_video), "--out", str(page_path), *options).exit_code == 0
    result = _predict(str(small_video), "--out", str(coco_path), "--format", "coco", *options)
    assert result.exit_code == 0, result.output
    page = _page(page_path)
    coco = COCO(str(coco_path))
    # One image per analysed frame (COCO ids from 1), one annotation per object.
    assert sorted(coco.getImgIds()) == [f["frame"] + 1 for f in page["frames"]] == list(range(1, 21, 3))
    objects = [o for f in page["frames"] for o in f["objects"]]
    assert objects and len(coco.getAnnIds()) == len(objects)
    first = next(f for f in page["frames"] if f["objects"])
    annotation = coco.loadAnns(coco.getAnnIds(imgIds=[first["frame"] + 1]))[0]
    x1, y1, x2, y2 = first["objects"][0]["box"]
    assert annotation["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert coco.loadCats(annotation["category_id"])[0]["name"] == first["objects"][0]["label"]
    assert coco.loadImgs(first["frame"] + 1)[0]["width"] == 160
    assert "person" in {c["name"] for c in coco.loadCats(coco.getCatIds())}


def test_predict_mot_without_track_is_a_usage_error(tmp_path, small_video, model_env):
    out = tmp_path / "out.mot.txt"
    result = CliRunner().invoke(main, ["predict", str(small_video), "--format", "mot", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "needs track ids" in result.output
    assert "frames/s" not in result.output  # refused before the model ran
    assert not out.exists()


def test_predict_track_gives_every_object_the_trackers_id(tmp_path, small_video, model_env):
    from detector.detection import AnalysedFrame, Detections
    from detector.pipeline.predict import track_results

    plain, tracked, mot = tmp_path / "plain.json", tmp_path / "tracked.json", tmp_path / "out.mot.txt"
    options = ["--score-threshold", "0.2", "--sample-fps", "5"]
    assert _predict(str(small_video), "--out", str(plain), *options).exit_code == 0
    result = _predict(str(small_video), "--out", str(tracked), "--track", *options)
    assert result.exit_code == 0, result.output
    frames = _page(tracked)["frames"]
    assert [f["frame"] for f in frames] == list(range(0, 20, 2))
    ids = [[o["track_id"] for o in f["objects"]] for f in frames]
    assert ids and all(type(i) is int and i >= 1 for frame in ids for i in frame)
    # Without the ids, the same objects as an untracked run; the ids are the tracker's.
    assert [[{k: v for k, v in o.items() if k != "track_id"} for o in f["objects"]] for f in frames] == [
        f["objects"] for f in _page(plain)["frames"]
    ]
    expected, summaries, _ = track_results(
        [
            AnalysedFrame(f["frame"], f["timestamp"], Detections.from_objects(f["objects"]))
            for f in _page(plain)["frames"]
        ]
    )
    assert ids == [[o["track_id"] for o in f.detections.to_objects()] for f in expected]
    assert f"; {len(summaries)} tracks in" in result.output
    # And the MOTChallenge export of the same: a line per object, 1-based frames.
    result = _predict(str(small_video), "--out", str(mot), "--track", "--format", "mot", *options)
    assert result.exit_code == 0, result.output
    lines = [line.split(",") for line in mot.read_text().splitlines()]
    assert [(int(a), int(b)) for a, b, *_ in lines] == [
        (f["frame"] + 1, o["track_id"]) for f in frames for o in f["objects"]
    ]


def test_predict_unknown_classes_are_a_usage_error_listing_the_labels(small_video, model_env):
    result = CliRunner().invoke(main, ["predict", str(small_video), "--classes", "person,banana2"])
    assert result.exit_code == 2, result.output
    assert "unknown label 'banana2'" in result.output
    listed = result.output.split("labels are:")[1]
    assert "person" in listed and "banana" in listed and "toothbrush" in listed
    assert "frames/s" not in result.output


def test_predict_classes_keep_only_those_labels(tmp_path, small_video, model_env):
    every, some = tmp_path / "every.json", tmp_path / "some.json"
    assert _predict(str(small_video), "--out", str(every), "--score-threshold", "0.2").exit_code == 0
    # "N/A" is a placeholder in the COCO class list, which random weights report too.
    labels = {o["label"] for f in _page(every)["frames"] for o in f["objects"]} - {"N/A"}
    assert len(labels) >= 2, labels
    kept = sorted(labels)[0]
    result = _predict(str(small_video), "--out", str(some), "--score-threshold", "0.2", "--classes", kept)
    assert result.exit_code == 0, result.output
    assert _page(some)["frames"] == [
        {**f, "objects": [o for o in f["objects"] if o["label"] == kept]} for f in _page(every)["frames"]
    ]


def test_predict_render_writes_a_playable_mp4(tmp_path, small_video, model_env):
    import av

    from detector.video import index_frames

    out, video = tmp_path / "result.json", tmp_path / "annotated.mp4"
    result = _predict(
        str(small_video), "--out", str(out), "--score-threshold", "0.2",
        "--frame-stride", "2", "--render", str(video),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"annotated video: {video}" in result.output
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
        assert sum(1 for frame in container.decode(stream) if frame.pts is not None) == 20
    source, annotated = index_frames(small_video), index_frames(video)
    assert [annotated.timestamp(p) for p in annotated.pts] == pytest.approx(
        [source.timestamp(p) for p in source.pts], abs=1e-3
    )


MODELS_TOML = f"""
default = "fast"
[models.fast]
model = "{TEST_MODEL}"
weights = "random"
[models.other]
model = "{TEST_MODEL}"
weights = "random"
seed = 7
"""


@pytest.fixture
def two_models(tmp_path, monkeypatch):
    path = tmp_path / "models.toml"
    path.write_text(MODELS_TOML)
    monkeypatch.setenv("DETECTOR_MODELS", str(path))
    monkeypatch.setenv("DETECTOR_DEVICE", "cpu")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))


def _worker_argv(monkeypatch, args: list[str]) -> list[str]:
    """The command line `detector worker ARGS` would run (it execs it)."""
    ran: list[list[str]] = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: ran.append(list(argv)))
    result = CliRunner().invoke(main, ["worker", *args])
    assert result.exit_code == 0, result.output
    return ran[0]


def test_a_detector_worker_consumes_every_models_queue_or_the_ones_named(two_models, monkeypatch):
    every = _worker_argv(monkeypatch, ["-Q", "detector"])
    assert every[every.index("-Q") + 1] == "detector.fast,detector.other"
    one = _worker_argv(monkeypatch, ["-Q", "detector", "--model", "other"])
    assert one[one.index("-Q") + 1] == "detector.other"


def test_a_worker_refuses_an_unknown_model_or_a_model_on_another_queue(two_models):
    unknown = CliRunner().invoke(main, ["worker", "-Q", "detector", "--model", "huge"])
    assert unknown.exit_code == 2 and "model must be one of fast, other" in unknown.output
    elsewhere = CliRunner().invoke(main, ["worker", "-Q", "processor", "--model", "fast"])
    assert elsewhere.exit_code == 2 and "--model is for detector workers" in elsewhere.output


def test_predict_runs_the_model_it_names(two_models, tmp_path, small_video):
    outputs = {}
    for name in ("fast", "other"):
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(
            main,
            ["predict", str(small_video), "--model", name, "--out", str(out), "--score-threshold", "0.05"],
        )
        assert result.exit_code == 0, result.output
        outputs[name] = json.loads(out.read_text())["frames"]
        assert f"seed={7 if name == 'other' else 0}" in result.output
    assert outputs["fast"] != outputs["other"]  # other weights, other detections
    bad = CliRunner().invoke(main, ["predict", str(small_video), "--model", "huge"])
    assert bad.exit_code == 2 and "fast, other" in bad.output


def test_user_add_makes_an_account_while_registration_is_closed(tmp_path, monkeypatch):
    from detector.app import create_app
    from detector.db.migrate import upgrade

    config = base_config(tmp_path, REGISTRATION_OPEN=False)
    (tmp_path / "data").mkdir()
    upgrade(config["DATABASE_URL"])
    monkeypatch.setenv("DETECTOR_ENV", "test")
    monkeypatch.setenv("REGISTRATION_OPEN", "false")
    for key in ("DATA_DIR", "DATABASE_URL", "VIDEO_STORAGE", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.setenv(key, config[key])
    for key in ("SECRET_KEY", "JWT_SECRET_KEY"):
        monkeypatch.setenv(key, config[key])

    added = CliRunner().invoke(main, ["user", "add", "operator.made", "--password", "password123"])
    assert added.exit_code == 0, added.output
    assert "user operator.made created" in added.output
    bad = CliRunner().invoke(main, ["user", "add", "bad\nname", "--password", "password123"])
    assert bad.exit_code == 1 and "username must be" in bad.output
    taken = CliRunner().invoke(main, ["user", "add", "operator.made", "--password", "password123"])
    assert taken.exit_code == 1 and "taken" in taken.output

    client = create_app(config).test_client()
    body = {"username": "operator.made", "password": "password123"}
    assert client.post("/api/auth/login", json=body).status_code == 200
    assert client.post("/api/auth/register", json={**body, "username": "walk.in"}).status_code == 403
