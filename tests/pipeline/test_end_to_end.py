"""Upload -> process_video -> chord of detect_frames -> merge_chunks, through real
worker processes, on the embedded defaults and on RabbitMQ + Redis.

The detections must equal `detector predict` on the same video with the same
seeded weights, frame by frame.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from detector.app import create_app
from detector.db.migrate import upgrade
from detector.detection import DetectorSettings, model_identity
from detector.pipeline.celery_app import EMBEDDED_CHORD_POLL_S
from detector.pipeline.predict import predict_video
from tests.conftest import Auth, base_config, server_config
from tests.pipeline.conftest import assert_same_detections, detector_config, wait_for_job

THRESHOLD = 0.3


@pytest.fixture(scope="module")
def baseline(seeded_weights: Path, e2e_video: Path) -> dict[str, Any]:
    page, _timing = predict_video(e2e_video, detector_config(seeded_weights), THRESHOLD)
    return page


def _app(config: dict[str, Any]):
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    return create_app(config)


def _upload(client, headers, path: Path, threshold: float = THRESHOLD) -> dict[str, Any]:
    response = client.post(
        "/api/jobs",
        headers=headers,
        content_type="multipart/form-data",
        data={"video": (io.BytesIO(path.read_bytes()), path.name), "score_threshold": str(threshold)},
    )
    assert response.status_code == 202, response.json
    return response.json


def _all_frames(client, headers, job_id: str) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        page = client.get(f"/api/jobs/{job_id}/detections?start={start}&limit=30", headers=headers).json
        frames += page["frames"]
        start = page["next_start"]
    return frames


def _run_job(config, workers_factory, e2e_video, baseline) -> None:
    app = _app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    with workers_factory(config) as workers:
        job = _upload(client, headers, e2e_video)
        done = wait_for_job(client, headers, job["id"], until=("succeeded", "failed", "cancelled"))
        assert done["status"] == "succeeded", (done, workers.logs())
    assert done["progress"] == {
        "frames_done": 80,
        "frames_total": 80,
        "percent": 100.0,
        "stage": "finished",
        "frames_tracked": None,
    }
    assert done["video"]["frame_count"] == 80
    # One exact name from creation on: backend, model and the weights file's checksum.
    expected_model = model_identity(DetectorSettings.from_config(config))
    assert expected_model.startswith("torchvision/fasterrcnn_mobilenet_v3_large_320_fpn@sha256:")
    assert job["model"] == done["model"] == expected_model
    assert done["started_at"] and done["finished_at"]
    frames = _all_frames(client, headers, job["id"])
    # Every frame index 0..N-1 exactly once, with its timestamp.
    assert [f["frame"] for f in frames] == list(range(80))
    assert [f["timestamp"] for f in frames] == [pytest.approx(i / 8) for i in range(80)]
    assert sum(len(f["objects"]) for f in frames) > 0, "a test with no detections proves nothing"
    assert done["objects_total"] == sum(len(f["objects"]) for f in frames)
    assert_same_detections(frames, baseline["frames"])


@pytest.mark.slow
def test_embedded_defaults(tmp_path, seeded_weights, e2e_video, baseline, workers_factory):
    config = base_config(tmp_path, BROKER_STORE_PROCESSED=True, **detector_config(seeded_weights))
    started = time.monotonic()
    _run_job(config, workers_factory, e2e_video, baseline)
    elapsed = time.monotonic() - started
    # The file result store's chord polling is a slow fallback, not a message a second.
    broker = tmp_path / "data" / "broker"
    # (Task messages: the folder also holds the control broadcasts that ask which
    # queues the workers consume.)
    headers = [json.loads(p.read_text())["headers"] for p in broker.glob("*/*.msg")]
    tasks = [h["task"] for h in headers if "task" in h]
    assert "detector.merge_chunks" in tasks  # the folder does hold the job's messages
    assert tasks.count("celery.chord_unlock") <= elapsed / EMBEDDED_CHORD_POLL_S + 2, (elapsed, tasks)


@pytest.mark.slow
def test_rabbitmq_and_redis(tmp_path, seeded_weights, e2e_video, baseline, workers_factory):
    config = server_config(tmp_path, **detector_config(seeded_weights))
    app = _app(config)
    app.extensions["celery"].control.purge()
    _run_job(config, workers_factory, e2e_video, baseline)


@pytest.mark.slow
def test_cancel_stops_a_running_job(tmp_path, seeded_weights, e2e_video, workers_factory):
    from detector.db import db
    from detector.models import Chunk, ChunkStatus, FrameDetections

    config = base_config(tmp_path, **detector_config(seeded_weights))
    app = _app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    with workers_factory(config):
        job = _upload(client, headers, e2e_video)
        wait_for_job(client, headers, job["id"], until=("processing",))
        while client.get(f"/api/jobs/{job['id']}", headers=headers).json["progress"]["frames_done"] == 0:
            pass
        cancelled = client.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
        assert cancelled.status_code == 200
        assert cancelled.json["status"] == "cancelled"
        # The running chunk notices at its next batch; the queued ones are skipped.
        with app.app_context():
            for _ in range(300):
                db.session.rollback()
                running = db.session.query(Chunk).filter_by(job_id=job["id"], status=ChunkStatus.RUNNING)
                if running.count() == 0:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the running chunk did not stop after the job was cancelled")
            chunks = db.session.query(Chunk).filter_by(job_id=job["id"]).all()
            assert sum(c.status is ChunkStatus.DONE for c in chunks) < len(chunks)
            assert db.session.query(FrameDetections).filter_by(job_id=job["id"]).count() == 0
    final = client.get(f"/api/jobs/{job['id']}", headers=headers).json
    assert final["status"] == "cancelled"
    assert client.get(f"/api/jobs/{job['id']}/detections", headers=headers).status_code == 409


@pytest.mark.slow
def test_without_weights_the_job_fails_saying_how_to_provide_them(
    tmp_path, small_video, seeded_weights, workers_factory
):
    """The detector workers cannot find their weights file (the API, which names the
    job's model, can): the job fails saying how to provide weights, never running on
    random ones."""
    api_config = base_config(
        tmp_path,
        DETECTOR_MODEL="fasterrcnn_mobilenet_v3_large_320_fpn",
        DETECTOR_WEIGHTS=str(seeded_weights),
        DETECTOR_DEVICE="cpu",
    )
    app = _app(api_config)
    client = app.test_client()
    headers = Auth(client).headers()
    with workers_factory({**api_config, "DETECTOR_WEIGHTS": str(tmp_path / "missing.pth")}):
        job = _upload(client, headers, small_video)
        done = wait_for_job(client, headers, job["id"], timeout=120)
    assert done["status"] == "failed"
    assert "does not exist" in done["error"] and "DETECTOR_WEIGHTS" in done["error"]
    assert "chunk 0" in done["error"]


def test_an_api_that_cannot_identify_its_model_refuses_uploads_saying_why(tmp_path, small_video):
    """A job records its exact model from creation on: with a weights file the API
    cannot read, an upload is refused (503) naming the setting, and nothing is kept."""
    config = base_config(
        tmp_path,
        DETECTOR_MODEL="fasterrcnn_mobilenet_v3_large_320_fpn",
        DETECTOR_WEIGHTS=str(tmp_path / "missing.pth"),
    )
    app = _app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    response = client.post(
        "/api/jobs",
        headers=headers,
        content_type="multipart/form-data",
        data={"video": (io.BytesIO(small_video.read_bytes()), small_video.name)},
    )
    assert response.status_code == 503, response.json
    assert response.json["error"] == "misconfigured"
    assert "DETECTOR_WEIGHTS" in response.json["message"] and "missing.pth" in response.json["message"]
    assert client.get("/api/jobs", headers=headers).json["total"] == 0
    assert not any(p.is_file() for p in Path(config["VIDEO_STORAGE"]).rglob("*"))
