"""The jobs API through the real HTTP app: uploads, ownership, pages, cancel, delete."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from detector.db import db
from detector.models import Chunk, FrameDetections, Job, JobStatus
from tests.conftest import Auth, reconfigure


def upload(
    client, headers, path: Path | None = None, data: bytes | None = None, filename: str = "clip.mp4", **form
):
    content = path.read_bytes() if path is not None else data
    body = {**{k: str(v) for k, v in form.items()}}
    if content is not None:
        body["video"] = (io.BytesIO(content), filename)
    return client.post("/api/jobs", headers=headers, data=body, content_type="multipart/form-data")


def stored_videos(app) -> list[Path]:
    root = Path(app.config["VIDEO_STORAGE"])
    return [p for p in root.rglob("*") if p.is_file()]


def queued_messages(app) -> list[dict]:
    folder = Path(app.config["DATA_DIR"]) / "broker" / "queue"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.msg"))]


def job_count(app) -> int:
    with app.app_context():
        return db.session.query(Job).count()


def test_upload_is_accepted_stored_and_queued(app, client, auth: Auth, small_video):
    headers = auth.headers()
    response = upload(client, headers, small_video, score_threshold=0.25)
    assert response.status_code == 202
    job = response.json
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["filename"] == "clip.mp4"
    assert job["score_threshold"] == 0.25
    assert job["video"] == {
        "codec": "h264",
        "width": 160,
        "height": 120,
        "fps": 10.0,
        "frame_count": 20,
        "duration": 2.0,
        "rotation": 0,
        "expires_at": None,
        "deleted_at": None,
    }
    assert job["progress"] == {
        "frames_done": 0,
        "frames_total": None,
        "percent": 0.0,
        "stage": "queued",
        "frames_tracked": None,
    }
    assert job["options"] == {
        "sample_fps": None,
        "frame_stride": None,
        "start": None,
        "end": None,
        "classes": None,
        "track": False,
        "model": "default",
    }

    # The video is kept under a server-made key, not the client's name.
    [stored] = stored_videos(app)
    assert stored.read_bytes() == small_video.read_bytes()
    assert "clip" not in stored.name
    # process_video(job_id) went to the processor queue: a reference, no pixels.
    [message] = queued_messages(app)
    assert message["headers"]["task"] == "detector.process_video"
    assert message["properties"]["delivery_info"]["routing_key"] == "processor"
    assert json.dumps(message).count(job["id"]) >= 1
    assert len(json.dumps(message)) < 4096


def test_default_score_threshold(client, auth: Auth, small_video, app):
    response = upload(client, auth.headers(), small_video)
    assert response.json["score_threshold"] == app.config["DEFAULT_SCORE_THRESHOLD"]


def test_path_like_filename_is_only_metadata(app, client, auth: Auth, small_video):
    response = upload(client, auth.headers(), small_video, filename="../../etc/passwd")
    assert response.status_code == 202
    [stored] = stored_videos(app)
    assert stored.parent == Path(app.config["VIDEO_STORAGE"])
    assert response.json["filename"] == "../../etc/passwd"


@pytest.mark.parametrize(
    "data, status",
    [
        (b"", 415),
        (b"this is a text file, not a video\n" * 10, 415),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, 415),  # an MP4 header and nothing else
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(app, client, auth: Auth, data, status):
    response = upload(client, auth.headers(), data=data)
    assert response.status_code == status
    assert response.json["message"]
    assert stored_videos(app) == []
    assert job_count(app) == 0
    assert queued_messages(app) == []


def test_audio_only_file_is_not_a_video(app, client, auth: Auth, tmp_path):
    from tests.api.test_bad_input import audio_only

    path = tmp_path / "tone.m4a"
    path.write_bytes(audio_only(tmp_path))
    response = upload(client, auth.headers(), path, filename="tone.m4a")
    assert response.status_code == 415
    assert "no video stream" in response.json["message"]
    assert stored_videos(app) == [] and job_count(app) == 0


def test_truncated_video_without_index_is_refused(app, client, auth: Auth, small_video):
    data = small_video.read_bytes()
    response = upload(client, auth.headers(), data=data[: len(data) // 2])
    assert response.status_code in (415, 422)
    assert stored_videos(app) == [] and job_count(app) == 0


def test_missing_video_field_is_400(app, client, auth: Auth):
    response = upload(client, auth.headers(), score_threshold=0.5)
    assert response.status_code == 400
    assert "video" in response.json["message"]
    assert job_count(app) == 0


@pytest.mark.parametrize("threshold", ["-0.1", "1.5", "abc"])
def test_out_of_range_threshold_is_400_and_leaves_nothing(app, client, auth: Auth, small_video, threshold):
    response = upload(client, auth.headers(), small_video, score_threshold=threshold)
    assert response.status_code == 400
    assert "score_threshold" in response.json["message"]
    assert stored_videos(app) == [] and job_count(app) == 0


def test_oversized_upload_is_413_and_leaves_nothing(app, client, auth: Auth, small_video):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = upload(client, auth.headers(), small_video)
    assert response.status_code == 413
    assert response.is_json
    assert stored_videos(app) == [] and job_count(app) == 0


def test_too_large_frames_are_refused(app, client, auth: Auth, small_video):
    reconfigure(app, MAX_FRAME_PIXELS=100 * 100)
    response = upload(client, auth.headers(), small_video)
    assert response.status_code == 422
    assert "160x120" in response.json["message"]
    assert stored_videos(app) == []


def test_jobs_need_a_token(client):
    assert client.get("/api/jobs").status_code == 401
    assert client.post("/api/jobs").status_code == 401


def test_list_is_own_jobs_newest_first_and_paginated(client, auth: Auth, small_video):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    ids = [upload(client, alice, small_video).json["id"] for _ in range(3)]
    upload(client, bob, small_video)
    page1 = client.get("/api/jobs?per_page=2", headers=alice).json
    page2 = client.get("/api/jobs?per_page=2&page=2", headers=alice).json
    assert page1["total"] == page2["total"] == 3
    assert [j["id"] for j in page1["jobs"] + page2["jobs"]] == ids[::-1]
    assert client.get("/api/jobs", headers=bob).json["total"] == 1
    assert client.get("/api/jobs?per_page=0", headers=alice).status_code == 400


def test_another_users_job_is_404_like_a_missing_one(client, auth: Auth, small_video):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    job_id = upload(client, alice, small_video).json["id"]
    for method, path in [
        ("get", f"/api/jobs/{job_id}"),
        ("get", f"/api/jobs/{job_id}/detections"),
        ("post", f"/api/jobs/{job_id}/cancel"),
        ("delete", f"/api/jobs/{job_id}"),
    ]:
        theirs = getattr(client, method)(path, headers=bob)
        missing = getattr(client, method)(path.replace(job_id, "0" * 32), headers=bob)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json["message"].replace(job_id, "X") == missing.json["message"].replace("0" * 32, "X")
    assert client.get(f"/api/jobs/{job_id}", headers=alice).status_code == 200


def test_detections_are_409_until_the_job_succeeds(client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    response = client.get(f"/api/jobs/{job_id}/detections", headers=headers)
    assert response.status_code == 409
    assert "queued" in response.json["message"]


def _finish(app, job_id: str, frames: int) -> None:
    """Store detections for a job as the pipeline would, and mark it succeeded."""
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.status = JobStatus.SUCCEEDED
        job.frames_total = frames
        for i in range(frames):
            db.session.add(
                FrameDetections(
                    job_id=job_id,
                    index=i,
                    timestamp=i / 10,
                    objects=[{"label": "person", "class_id": 1, "score": 0.9, "box": [1.0, 2.0, 3.0, 4.0]}]
                    * (i % 3),
                )
            )
        db.session.commit()


def test_detections_page_through_every_frame_in_order(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    _finish(app, job_id, 20)
    frames, start, pages = [], 0, 0
    while start is not None:
        page = client.get(f"/api/jobs/{job_id}/detections?start={start}&limit=7", headers=headers).json
        frames += page["frames"]
        start = page["next_start"]
        pages += 1
    assert pages == 3
    assert [f["frame"] for f in frames] == list(range(20))
    assert frames[4] == {
        "frame": 4,
        "timestamp": 0.4,
        "objects": [{"label": "person", "class_id": 1, "score": 0.9, "box": [1.0, 2.0, 3.0, 4.0]}],
    }
    job = client.get(f"/api/jobs/{job_id}", headers=headers).json
    assert job["progress"] == {
        "frames_done": 20,
        "frames_total": 20,
        "percent": 100.0,
        "stage": "finished",
        "frames_tracked": None,
    }


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "start=-1", "start=x"])
def test_bad_detection_page_parameters_are_400(app, client, auth: Auth, small_video, query):
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    _finish(app, job_id, 3)
    assert client.get(f"/api/jobs/{job_id}/detections?{query}", headers=headers).status_code == 400


def test_progress_sums_the_chunks(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.status, job.frames_total, job.dispatched = JobStatus.PROCESSING, 20, True
        for i, done in enumerate([10, 3]):
            db.session.add(
                Chunk(
                    job_id=job_id,
                    index=i,
                    start_frame=10 * i,
                    end_frame=10 * i + 10,
                    seek_pts=0,
                    frame_pts=[],
                    timestamps=[],
                    frames_done=done,
                )
            )
        db.session.commit()
    job = client.get(f"/api/jobs/{job_id}", headers=headers).json
    assert job["progress"] == {
        "frames_done": 13,
        "frames_total": 20,
        "percent": 65.0,
        "stage": "detecting",
        "frames_tracked": None,
    }


def test_cancel_a_queued_job(client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    response = client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    assert response.status_code == 200
    assert response.json["status"] == "cancelled"
    assert response.json["finished_at"]
    again = client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    assert again.status_code == 409


def test_delete_removes_the_job_its_video_and_detections(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    _finish(app, job_id, 5)
    assert client.delete(f"/api/jobs/{job_id}", headers=headers).status_code == 204
    assert client.get(f"/api/jobs/{job_id}", headers=headers).status_code == 404
    assert stored_videos(app) == []
    with app.app_context():
        assert db.session.query(FrameDetections).count() == 0


def test_swagger_ui_and_openapi_document(client):
    ui = client.get("/api/", follow_redirects=True)
    assert ui.status_code == 200 and b"swagger" in ui.data.lower()
    spec = client.get("/api/swagger.json").json
    assert spec["securityDefinitions"]["Bearer"]["in"] == "header"
    for path in [
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/detections",
        "/jobs/{job_id}/cancel",
        "/auth/login",
        "/auth/register",
        "/auth/refresh",
        "/auth/logout",
        "/auth/me",
    ]:
        assert path in spec["paths"], path
    assert spec["paths"]["/jobs"]["post"]["consumes"] == ["multipart/form-data"]


def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["checks"] == {"database": "ok", "broker": "ok", "result_backend": "ok"}


def test_readiness_names_what_is_down(tmp_path):
    from detector.app import create_app
    from tests.conftest import base_config

    config = base_config(
        tmp_path,
        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:1//",
        CELERY_RESULT_BACKEND="redis://127.0.0.1:1/0",
    )
    (tmp_path / "data").mkdir()
    ready = create_app(config).test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["database"] == "ok"
    assert ready.json["checks"]["broker"].startswith("unreachable")
    assert ready.json["checks"]["result_backend"].startswith("unreachable")
