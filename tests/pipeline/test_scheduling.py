"""Models chosen per job, fair turns between jobs, and per-user limits, with real workers.

- Two models in one deployment, one on PyTorch and one on OpenVINO (the worker
  exports it to ONNX on its first chunk): each job's detections equal `detector
  predict --model` of its model, and one detector worker serves both
  (MAX_LOADED_MODELS=1, so it rebuilds each in turn).
- A job for a model no online worker serves waits, queued, saying so; it starts
  once such a worker is online and the watchdog looks again.
- Chunk priorities: with one detector worker busy on a long job, a one-chunk
  job submitted later runs before the long job's remaining chunks, on RabbitMQ
  and on the embedded broker alike.
- MAX_PROCESSING_JOBS_PER_USER: a user's extra jobs wait their turn, with their
  place in line; another user's job does not wait for them.
"""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from detector.app import create_app
from detector.bench.runtimes import conditioned_checkpoint
from detector.db import db
from detector.db.migrate import upgrade
from detector.models import Chunk, Job
from detector.pipeline.predict import predict_video
from detector.pipeline.watchdog import watchdog
from detector.pipeline.workers import forget
from detector.video.synthetic import make_video
from tests.conftest import Auth, base_config, server_config
from tests.pipeline.conftest import TEST_MODEL, assert_same_detections, detector_config, wait_for_job

THRESHOLD = 0.3


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second set of seeded weights, the second model of the deployment: calibrated
    on frames of the test video's size, so that OpenVINO and PyTorch find the same
    objects (detector/bench/runtimes.py, conditioned_checkpoint)."""
    path = tmp_path_factory.mktemp("weights-b") / "other.pth"
    return conditioned_checkpoint(TEST_MODEL, path, seed=99, width=320, height=240)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 frames with a keyframe every 8: twelve chunks of 8 frames."""
    return make_video(
        tmp_path_factory.mktemp("long") / "long.mp4", frames=96, width=320, height=240, fps=8, gop=8
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 frames: one chunk."""
    return make_video(
        tmp_path_factory.mktemp("clip") / "clip.mp4", frames=8, width=320, height=240, fps=8, gop=8
    )


def _models_file(tmp_path: Path, first: Path, second: Path, second_backend: str = "torchvision") -> Path:
    path = tmp_path / "models.toml"
    path.write_text(
        'default = "first"\n'
        f'[models.first]\nmodel = "{TEST_MODEL}"\nweights = "{first}"\n'
        f'[models.second]\nbackend = "{second_backend}"\nmodel = "{TEST_MODEL}"\nweights = "{second}"\n'
        f'cache_dir = "{tmp_path / "model-cache"}"\n'
    )
    return path


def _app(config: dict[str, Any]) -> Any:
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    return create_app(config)


def _upload(client: Any, headers: dict[str, str], path: Path, **form: str) -> dict[str, Any]:
    response = client.post(
        "/api/jobs",
        headers=headers,
        content_type="multipart/form-data",
        data={"video": (io.BytesIO(path.read_bytes()), path.name), "score_threshold": str(THRESHOLD), **form},
    )
    assert response.status_code == 202, response.json
    return response.json


def _frames(client: Any, headers: dict[str, str], job_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/api/jobs/{job_id}/detections?limit=1000", headers=headers).json
    assert page["next_start"] is None
    return page["frames"]


def _wait(predicate: Any, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_two_models_in_one_deployment_each_equal_to_predict(
    tmp_path, seeded_weights, other_weights, e2e_video, workers_factory
):
    config = base_config(
        tmp_path,
        **detector_config(seeded_weights),
        DETECTOR_MODELS=str(_models_file(tmp_path, seeded_weights, other_weights, "openvino")),
        MAX_LOADED_MODELS=1,
    )
    app = _app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    listed = client.get("/api/models", headers=headers).json["models"]
    assert [m["name"] for m in listed] == ["first", "second"]
    assert [m["queue"] for m in listed] == ["detector.first", "detector.second"]
    assert listed[0]["default"] and not listed[1]["default"]
    assert listed[0]["weights_checksum"] != listed[1]["weights_checksum"]
    assert [m["backend"] for m in listed] == ["torchvision", "openvino"]
    with workers_factory(config, models=("first", "second")) as workers:
        # "" stands for a job that names no model (an empty name is refused: it is no model's).
        jobs = {
            name: _upload(client, headers, e2e_video, **({"model": name} if name else {}))
            for name in ("first", "second", "")
        }
        done = {name: wait_for_job(client, headers, job["id"]) for name, job in jobs.items()}
        assert all(d["status"] == "succeeded" for d in done.values()), (done, workers.logs())
        forget()
        online = {m["name"]: m["online"] for m in client.get("/api/models", headers=headers).json["models"]}
    assert online == {"first": True, "second": True}
    assert done[""]["options"]["model"] == "first"  # no model named: the default
    by_name = {m["name"]: m for m in listed}
    for name in ("first", "second"):
        assert done[name]["options"]["model"] == name
        assert done[name]["model"] == by_name[name]["identity"]
        expected, _timing = predict_video(e2e_video, config, THRESHOLD, model=name)
        assert_same_detections(_frames(client, headers, done[name]["id"]), expected["frames"])
    assert done["first"]["model"] != done["second"]["model"]
    assert done["second"]["model"].startswith("openvino/")
    assert list((tmp_path / "model-cache" / "onnx").glob("*.onnx")), "the worker exported the model"
    first_frames = _frames(client, headers, done["first"]["id"])
    assert first_frames != _frames(client, headers, done["second"]["id"]), "two models, one answer"
    assert sum(len(f["objects"]) for f in first_frames) > 0


@pytest.mark.slow
def test_a_model_no_worker_serves_waits_saying_so_then_runs(
    tmp_path, seeded_weights, other_weights, clip, workers_factory
):
    config = base_config(
        tmp_path,
        **detector_config(seeded_weights),
        DETECTOR_MODELS=str(_models_file(tmp_path, seeded_weights, other_weights)),
    )
    app = _app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    with workers_factory(config, models=("first",)) as workers:
        job = _upload(client, headers, clip, model="second")
        _wait(
            lambda: client.get(f"/api/jobs/{job['id']}", headers=headers).json["waiting"] is not None,
            what="the job to say it waits",
        )
        waiting = client.get(f"/api/jobs/{job['id']}", headers=headers).json
        assert waiting["status"] == "queued"
        assert "worker that serves model 'second'" in waiting["waiting"], waiting
        forget()
        online = {m["name"]: m["online"] for m in client.get("/api/models", headers=headers).json["models"]}
        assert online == {"first": True, "second": False}
        # A worker for it comes online; the watchdog's next look starts the job.
        workers.start("detector", models=("second",), name="detector-second")
        forget()
        _wait(lambda: _serving(app, "detector.second"), what="the second worker to come online")
        with app.app_context():
            watchdog()
        done = wait_for_job(client, headers, job["id"])
        assert done["status"] == "succeeded", (done, workers.logs())
        assert done["waiting"] is None


def _serving(app: Any, queue: str) -> bool:
    from detector.pipeline.workers import serving

    forget()
    with app.app_context():
        return bool(serving(queue))


def _chunk_starts(app: Any, job_id: str) -> list[float]:
    with app.app_context():
        chunks = db.session.query(Chunk).filter_by(job_id=job_id).order_by(Chunk.index).all()
        return [c.started_at.timestamp() for c in chunks]


def _fair_turns(config: dict[str, Any], workers_factory: Any, long_video: Path, clip: Path) -> None:
    app = _app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    with workers_factory(config) as workers:
        long_job = _upload(client, headers, long_video)
        # Its chunks are all queued, and the only detector works on the first.
        _wait(
            lambda: (
                client.get(f"/api/jobs/{long_job['id']}", headers=headers).json["progress"]["frames_done"] > 0
            ),
            what="the long job to start",
        )
        short_job = _upload(client, headers, clip)
        short = wait_for_job(client, headers, short_job["id"])
        long = wait_for_job(client, headers, long_job["id"])
        assert short["status"] == long["status"] == "succeeded", workers.logs()
    long_starts = _chunk_starts(app, long_job["id"])
    [short_start] = _chunk_starts(app, short_job["id"])
    with app.app_context():
        short_claimed = db.session.get(Job, short_job["id"]).started_at.timestamp()
    assert len(long_starts) == 12
    # Between the short job's planning and its chunk, the detector finished at
    # most the long chunk it was running (and started at most one more while
    # the short chunk was being queued): not the long job's remaining chunks.
    overtaken = [t for t in long_starts if short_claimed <= t < short_start]
    assert len(overtaken) <= 1, (long_starts, short_claimed, short_start)
    # First come, first served would have run all twelve first.
    assert sum(t > short_start for t in long_starts) >= 8, (long_starts, short_start)


@pytest.mark.slow
def test_a_short_job_overtakes_a_long_ones_remaining_chunks_on_rabbitmq(
    tmp_path, seeded_weights, long_video, clip, workers_factory
):
    config = server_config(tmp_path, **{**detector_config(seeded_weights), "CHUNK_FRAMES": 8})
    _app(config).extensions["celery"].control.purge()
    _fair_turns(config, workers_factory, long_video, clip)


@pytest.mark.slow
def test_the_embedded_broker_takes_turns_the_same_way(
    tmp_path, seeded_weights, long_video, clip, workers_factory
):
    config = base_config(tmp_path, **{**detector_config(seeded_weights), "CHUNK_FRAMES": 8})
    _fair_turns(config, workers_factory, long_video, clip)


@pytest.mark.slow
def test_a_users_extra_jobs_wait_their_turn_in_line(
    tmp_path, seeded_weights, clip, e2e_video, workers_factory
):
    config = base_config(tmp_path, **detector_config(seeded_weights), MAX_PROCESSING_JOBS_PER_USER=1)
    app = _app(config)
    client = app.test_client()
    auth = Auth(client)
    alice, bob = auth.headers("alice"), auth.headers("bob")
    with workers_factory(config, detector_concurrency=2) as workers:
        first = _upload(client, alice, e2e_video)
        second = _upload(client, alice, clip)
        third = _upload(client, alice, clip)
        # The second and third wait behind the first, in the order they came.
        _wait(
            lambda: client.get(f"/api/jobs/{third['id']}", headers=alice).json["queue_position"] == 2,
            what="alice's third job to wait second in line",
        )
        second_now = client.get(f"/api/jobs/{second['id']}", headers=alice).json
        if second_now["status"] == "queued":  # the first may have ended meanwhile on a fast machine
            assert second_now["queue_position"] == 1
            assert "at most 1 run at once" in second_now["waiting"]
        # Bob's job is not held back by Alice's.
        bobs = _upload(client, bob, clip)
        assert wait_for_job(client, bob, bobs["id"])["status"] == "succeeded"
        done = [wait_for_job(client, alice, j["id"]) for j in (first, second, third)]
        assert all(d["status"] == "succeeded" for d in done), workers.logs()
    with app.app_context():
        spans = [
            (db.session.get(Job, j["id"]).started_at, db.session.get(Job, j["id"]).finished_at)
            for j in (first, second, third)
        ]
    # One of Alice's jobs at a time, in the order she sent them.
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended, spans
    assert all(d["queue_position"] is None and d["waiting"] is None for d in done)
