"""Models chosen per job over the API: GET /api/models, a job's `model`, and what a
queued job says it waits for (no workers run here: planning is called in-process)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import Retry

from detector.detection import DetectorSettings, model_identity
from detector.models import WAIT_SLOT, WAIT_WORKER, JobStatus, utcnow
from detector.pipeline import workers
from detector.pipeline.dispatch import stop_job
from detector.pipeline.planning import WORKER_GRACE
from detector.pipeline.tasks import process_video
from tests.api.conftest import job_row, update_job
from tests.api.test_jobs import job_count, queued_messages, stored_videos, upload
from tests.conftest import Auth, reconfigure

MODELS = """
default = "fast"

[models.fast]
model = "fasterrcnn_mobilenet_v3_large_320_fpn"
weights = "random"
min_score = 0.2

[models.accurate]
backend = "detectron2"
model = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
device = "cuda"
"""


@pytest.fixture
def two_models(app: Any, tmp_path: Path) -> Any:
    path = tmp_path / "models.toml"
    path.write_text(MODELS)
    reconfigure(app, DETECTOR_MODELS=str(path))
    return app


def test_a_deployment_without_models_has_one_named_default(app, client, auth: Auth):
    response = client.get("/api/models", headers=auth.headers())
    assert response.status_code == 200
    [model] = response.json["models"]
    settings = DetectorSettings.from_config(app.config)
    assert model["name"] == "default" and model["default"] is True
    assert model["identity"] == model_identity(settings)
    assert model["queue"] == "detector.default"
    assert "person" in model["labels"] and "N/A" not in model["labels"]
    assert model["online"] in (None, False)  # no worker runs in these tests
    assert client.get("/api/models").status_code == 401


def test_models_are_listed_default_first_with_their_identity(two_models, client, auth: Auth):
    listed = client.get("/api/models", headers=auth.headers()).json["models"]
    assert [m["name"] for m in listed] == ["fast", "accurate"]
    fast, accurate = listed
    assert fast["identity"] == "torchvision/fasterrcnn_mobilenet_v3_large_320_fpn@random(seed=0)"
    assert (fast["backend"], fast["model"], fast["weights"]) == (
        "torchvision",
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "random(seed=0)",
    )
    assert accurate["identity"].startswith("detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml@")
    assert (accurate["device"], accurate["queue"], accurate["default"]) == (
        "cuda",
        "detector.accurate",
        False,
    )
    assert len(accurate["labels"]) == 80


def test_a_weights_file_is_identified_by_its_checksum(app, client, auth: Auth, tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    path = tmp_path / "models.toml"
    path.write_text(f'[models.mine]\nweights = "{weights}"\n')
    reconfigure(app, DETECTOR_MODELS=str(path))
    [mine] = client.get("/api/models", headers=auth.headers()).json["models"]
    assert mine["weights_checksum"] == mine["weights"]
    assert mine["weights"].startswith("sha256:") and mine["identity"].endswith(mine["weights"])


def test_a_job_runs_the_model_it_names(two_models, client, auth: Auth, small_video):
    headers = auth.headers()
    response = upload(client, headers, small_video, model="accurate", score_threshold=0.5)
    assert response.status_code == 202, response.json
    assert response.json["options"]["model"] == "accurate"
    assert response.json["model"].startswith("detectron2/")
    default = upload(client, headers, small_video).json
    assert default["options"]["model"] == "fast"
    assert default["model"] == "torchvision/fasterrcnn_mobilenet_v3_large_320_fpn@random(seed=0)"
    job = job_row(two_models, response.json["id"])
    assert job.model_key == "accurate"


def test_an_unknown_model_is_a_400_listing_them_and_keeps_nothing(
    two_models, client, auth: Auth, small_video
):
    response = upload(client, auth.headers(), small_video, model="huge")
    assert response.status_code == 400
    assert "model must be one of fast, accurate; got 'huge'" in response.json["message"]
    assert job_count(two_models) == 0 and stored_videos(two_models) == []
    assert queued_messages(two_models) == []


def test_classes_and_the_score_floor_are_the_chosen_models(two_models, client, auth: Auth, small_video):
    headers = auth.headers()
    # Detectron2's COCO ids start at 0 with person; torchvision's at 1.
    detectron2 = upload(client, headers, small_video, model="accurate", classes="0", score_threshold=0.5)
    assert detectron2.status_code == 202 and detectron2.json["options"]["classes"] == ["person"]
    torchvision = upload(client, headers, small_video, classes="0")
    assert torchvision.status_code == 400 and "unknown label '0'" in torchvision.json["message"]
    # The fast model's min_score is 0.2: a lower threshold is refused for it only.
    low = upload(client, headers, small_video, score_threshold=0.1)
    assert low.status_code == 400 and "0.2" in low.json["message"]
    assert upload(client, headers, small_video, model="accurate", score_threshold=0.1).status_code == 202


def test_labels_of_a_named_model(two_models, client, auth: Auth):
    headers = auth.headers()
    accurate = client.get("/api/labels?model=accurate", headers=headers).json
    assert accurate["labels"][0] == {"class_id": 0, "label": "person"}
    assert accurate["model"].startswith("detectron2/")
    fast = client.get("/api/labels", headers=headers).json
    assert fast["labels"][0] == {"class_id": 1, "label": "person"}
    unknown = client.get("/api/labels?model=nope", headers=headers)
    assert unknown.status_code == 400 and "fast, accurate" in unknown.json["message"]


def test_a_job_for_a_model_no_online_worker_serves_waits_saying_so(
    two_models, client, auth: Auth, small_video, monkeypatch
):
    job_id = upload(client, auth.headers(), small_video, model="accurate", score_threshold=0.5).json["id"]
    # The workers that answer serve the fast model only.
    monkeypatch.setattr(workers, "consumers", lambda: {"detector.fast": ["detector@a"], "processor": ["p@a"]})
    # Just submitted: planning looks again in a few seconds (workers starting with
    # the service come up meanwhile) ...
    with two_models.app_context(), pytest.raises(Retry):
        process_video.run(job_id)
    assert job_row(two_models, job_id).waiting_for == WAIT_WORKER
    # ... and after the grace period leaves it to the watchdog.
    update_job(two_models, job_id, created_at=utcnow() - WORKER_GRACE - timedelta(seconds=1))
    with two_models.app_context():
        assert process_video.run(job_id) == {"job_id": job_id, "waiting": WAIT_WORKER}
    job = client.get(f"/api/jobs/{job_id}", headers=auth.headers()).json
    assert job["status"] == "queued" and job["queue_position"] is None
    assert "waiting for a worker that serves model 'accurate'" in job["waiting"]
    assert "detector worker -Q detector --model accurate" in job["waiting"]
    # When the workers cannot be asked at all, planning goes ahead.
    monkeypatch.setattr(workers, "consumers", lambda: None)
    with two_models.app_context():
        assert process_video.run(job_id)["chunks"] >= 1
    assert job_row(two_models, job_id).waiting_for is None


def test_planning_looks_again_for_a_worker_as_often_as_the_grace_period_allows(
    two_models, client, auth: Auth, small_video, monkeypatch
):
    """Celery's default of three retries would end the wait after about 20 s, leaving
    the job queued for good; the wait is bounded by WORKER_GRACE alone."""
    job_id = upload(client, auth.headers(), small_video, model="accurate", score_threshold=0.5).json["id"]
    monkeypatch.setattr(workers, "consumers", lambda: {"detector.fast": ["detector@a"], "processor": ["p@a"]})
    with two_models.app_context():
        # As a worker runs it on its 11th delivery: the retry is sent, not refused.
        process_video.push_request(
            id="planning-retry", args=[job_id], kwargs={}, retries=10, called_directly=False, is_eager=False
        )
        try:
            with pytest.raises(Retry):
                process_video.run(job_id)
        finally:
            process_video.pop_request()
    assert [m["headers"]["task"] for m in queued_messages(two_models)][-1] == "detector.process_video"


def test_a_job_waiting_for_a_worker_keeps_its_place_before_its_model_only(
    two_models, client, auth: Auth, small_video, monkeypatch
):
    reconfigure(two_models, MAX_PROCESSING_JOBS_PER_USER=1)
    alice = auth.headers("alice")
    serves = {"detector.fast": ["detector@a"], "processor": ["p@a"]}
    monkeypatch.setattr(workers, "consumers", lambda: serves)
    older = upload(client, alice, small_video, model="accurate", score_threshold=0.5).json["id"]
    with two_models.app_context(), pytest.raises(Retry):
        process_video.run(older)
    assert job_row(two_models, older).waiting_for == WAIT_WORKER
    # A job of another model does not wait for it ...
    fast = upload(client, alice, small_video, model="fast").json["id"]
    with two_models.app_context():
        assert process_video.run(fast)["chunks"] >= 1
        stop_job(fast, JobStatus.CANCELLED, "test")
    # ... but a younger job of its model, whose planner is the first to see that
    # model's worker online, waits behind it: they start in the order she sent them.
    serves["detector.accurate"] = ["detector@b"]
    younger = upload(client, alice, small_video, model="accurate", score_threshold=0.5).json["id"]
    with two_models.app_context():
        assert process_video.run(younger) == {"job_id": younger, "waiting": WAIT_SLOT}
    assert client.get(f"/api/jobs/{younger}", headers=alice).json["queue_position"] == 2
    with two_models.app_context():
        assert process_video.run(older)["chunks"] >= 1
    assert client.get(f"/api/jobs/{younger}", headers=alice).json["queue_position"] == 1


def test_jobs_over_the_per_user_limit_wait_in_line(app, client, auth: Auth, small_video):
    reconfigure(app, MAX_PROCESSING_JOBS_PER_USER=1)
    alice, bob = auth.headers("alice"), auth.headers("bob")
    ids = [upload(client, alice, small_video).json["id"] for _ in range(3)]
    with app.app_context():
        assert process_video.run(ids[0])["chunks"] >= 1
        assert process_video.run(ids[2]) == {"job_id": ids[2], "waiting": WAIT_SLOT}
        assert process_video.run(ids[1]) == {"job_id": ids[1], "waiting": WAIT_SLOT}
    second, third = (client.get(f"/api/jobs/{i}", headers=alice).json for i in ids[1:])
    assert (second["queue_position"], third["queue_position"]) == (1, 2)
    assert second["status"] == "queued"
    assert "at most 1 run at once" in second["waiting"] and "number 1 in line" in second["waiting"]
    # Another user's job is not held back by Alice's.
    bobs = upload(client, bob, small_video).json["id"]
    with app.app_context():
        assert process_video.run(bobs)["chunks"] >= 1
    # Alice's first job ends: her oldest waiting job is sent on, and only it.
    before = len(queued_messages(app))
    with app.app_context():
        stop_job(ids[0], JobStatus.CANCELLED, "test")
    sent = [m for m in queued_messages(app)[before:] if m["headers"]["task"] == "detector.process_video"]
    assert [m["headers"]["id"] for m in sent] == [ids[1]]
    with app.app_context():
        assert process_video.run(ids[1])["chunks"] >= 1
    assert client.get(f"/api/jobs/{ids[2]}", headers=alice).json["queue_position"] == 1


def test_a_users_younger_job_planned_first_still_waits_behind_her_older_one(
    app, client, auth: Auth, small_video
):
    """Jobs start in the order their owner sent them, whichever process_video runs first."""
    reconfigure(app, MAX_PROCESSING_JOBS_PER_USER=1)
    alice = auth.headers("alice")
    older, younger = (upload(client, alice, small_video).json["id"] for _ in range(2))
    with app.app_context():
        assert process_video.run(younger) == {"job_id": younger, "waiting": WAIT_SLOT}
    assert client.get(f"/api/jobs/{younger}", headers=alice).json["queue_position"] == 2
    with app.app_context():
        assert process_video.run(older)["chunks"] >= 1
        # Sent again (a duplicate delivery), the younger one still waits: the older one runs.
        assert process_video.run(younger) == {"job_id": younger, "waiting": WAIT_SLOT}
    assert client.get(f"/api/jobs/{younger}", headers=alice).json["queue_position"] == 1


def test_a_lost_admission_is_made_good_by_the_watchdog(app, client, auth: Auth, small_video):
    reconfigure(app, MAX_PROCESSING_JOBS_PER_USER=1)
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    update_job(app, job_id, waiting_for=WAIT_SLOT)  # waiting, and no job of its owner runs
    before = len(queued_messages(app))
    with app.app_context():
        from detector.pipeline.watchdog import watchdog

        watchdog()
    sent = [
        m["headers"]["id"]
        for m in queued_messages(app)[before:]
        if m["headers"].get("task") == "detector.process_video"
    ]
    assert sent == [job_id]


def test_an_int8_model_says_its_precision_and_calibration_in_its_identity(
    app, client, auth: Auth, tmp_path, testdata
):
    frames = tmp_path / "calibration"
    frames.mkdir()
    (frames / "0.png").write_bytes(b"not decoded to identify it")
    path = tmp_path / "models.toml"
    table = (
        f'backend = "openvino"\nfile = "{testdata.ssd_onnx}"\nfamily = "ssd"\nlabels = "{testdata.labels}"\n'
    )
    path.write_text(
        f'[models.fp32]\n{table}\n[models.int8]\n{table}precision = "int8"\ncalibration = "calibration"\n'
    )
    reconfigure(app, DETECTOR_MODELS=str(path))
    fp32, int8 = client.get("/api/models", headers=auth.headers()).json["models"]
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert int8["identity"].startswith(fp32["identity"] + "+int8(calibration=sha256:")
    assert int8["weights_checksum"] == fp32["weights_checksum"] == fp32["weights"]  # the file's own
