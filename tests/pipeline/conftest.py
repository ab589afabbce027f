"""Real Celery worker processes for end-to-end tests, and seeded model weights."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detector.runtime.processes import ProcessGroup, worker_argv
from detector.video.synthetic import make_video

# A small, fast model: the 320 px MobileNetV3 Faster R-CNN, with seeded random weights.
TEST_MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"
BATCH = 8


@pytest.fixture(scope="session")
def seeded_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded random weights saved to a file, so workers load them through the real path."""
    import torch

    from detector.detection import DetectorSettings
    from detector.detection.torchvision_backend import TorchvisionPredictor

    predictor = TorchvisionPredictor(
        DetectorSettings(model=TEST_MODEL, weights="random", seed=1234, device="cpu"), "cpu"
    )
    path = tmp_path_factory.mktemp("weights") / "seeded.pth"
    torch.save(predictor.model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def e2e_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s of moving shapes, 320x240 at 8 fps (80 frames), a keyframe every 24 frames."""
    return make_video(
        tmp_path_factory.mktemp("e2e") / "shapes.mp4", frames=80, width=320, height=240, fps=8, gop=24
    )


def detector_config(weights: Path) -> dict[str, Any]:
    return {
        "DETECTOR_BACKEND": "torchvision",
        "DETECTOR_MODEL": TEST_MODEL,
        "DETECTOR_WEIGHTS": str(weights),
        "DETECTOR_DEVICE": "cpu",
        "DETECTOR_BATCH_SIZE": BATCH,
        "DETECTOR_MIN_SCORE": 0.05,
        # Chunks of 24 frames start on keyframes, and 24 is a multiple of the batch:
        # the workers batch exactly the frames `detector predict` batches.
        "CHUNK_FRAMES": 24,
    }


def worker_env(config: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in config.items():
        if key in ("RATELIMIT_ENABLED", "TESTING"):
            continue
        env["DETECTOR_ENV" if key == "ENV" else key] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Workers:
    """A processor and a detector worker, each a real `celery worker` process,
    started as `detector up` starts them (detector.runtime.processes); with
    ``render``, a worker for the ``render`` queue (annotated videos) as well."""

    def __init__(
        self,
        config: dict[str, Any],
        log_dir: Path,
        detector_concurrency: int = 1,
        render: bool = False,
        models: tuple[str, ...] = ("default",),
    ) -> None:
        self.env = worker_env(config)
        self.log_dir = log_dir
        self.detector_concurrency = detector_concurrency
        self.models = models
        self.render = render
        self.group = ProcessGroup(self.env, log_dir)

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.group.procs

    def start(
        self, queue: str, concurrency: int = 1, models: tuple[str, ...] | None = None, name: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a worker for ``queue`` (a detector worker serves ``models``, by default
        the ones the group was made with), known in the group as ``name`` (the queue's)."""
        name = name or queue
        argv = worker_argv(
            queue,
            concurrency=concurrency,
            node_name=f"{name}-{os.getpid()}@%h",
            extra=["--without-gossip", "--without-mingle"],
            models=models or self.models,
        )
        return self.group.start(name, argv)

    def __enter__(self) -> Workers:
        self.start("processor", 2)
        self.start("detector", self.detector_concurrency)
        if self.render:
            self.start("render")
        return self

    def stop(self, queue: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        self.group.stop(queue, sig, timeout)  # the main process, as `docker stop` does

    def __exit__(self, *exc: object) -> None:
        for queue in list(self.procs):
            self.stop(queue)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.log_dir.glob("*.log"))


@pytest.fixture
def workers_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Workers] = []

    def make(config: dict[str, Any], **kwargs: Any) -> Workers:
        workers = Workers(config, tmp_path, **kwargs)
        started.append(workers)
        return workers

    yield make
    for workers in started:
        workers.__exit__()


def wait_for_job(
    client: Any,
    headers: dict[str, str],
    job_id: str,
    timeout: float = 240,
    until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json
        if job["status"] in until:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job did not reach {until} in {timeout} s: {job}")


def assert_same_detections(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [f["frame"] for f in got] == [f["frame"] for f in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["timestamp"] == pytest.approx(e["timestamp"], abs=1e-6)
        assert len(g["objects"]) == len(e["objects"]), f"frame {g['frame']}"
        for a, b in zip(g["objects"], e["objects"], strict=True):
            assert (a["label"], a["class_id"]) == (b["label"], b["class_id"])
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
            assert a["box"] == pytest.approx(b["box"], abs=0.5)
