"""VIDEO_RETENTION_DAYS through the API: a finished job records when its videos expire,
the sweep deletes them (and only them), and the video endpoints answer 410 afterwards."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from detector.db import db
from detector.models import Chunk, ChunkStatus, FrameDetections, Job, JobStatus, RenderStatus, utcnow
from detector.pipeline.merging import merge_chunks
from detector.pipeline.rendering import render_job
from detector.pipeline.retention import sweep_videos
from detector.pipeline.tasks import watchdog
from detector.pipeline.tracking import track_objects
from tests.api.conftest import job_row, render_row, update_job, update_render
from tests.api.test_jobs import stored_videos, upload
from tests.conftest import Auth, reconfigure

FRAMES = 20


def _objects(i: int) -> list[dict]:
    """A person walking right 3 px a frame: one track."""
    return [{"label": "person", "class_id": 1, "score": 0.9, "box": [10.0 + 3 * i, 20.0, 40.0 + 3 * i, 80.0]}]


def _finished(app, client, headers, video: Path, **form) -> str:
    """A job of ``video`` whose one chunk is stored, finished by the pipeline's own steps
    (merge_chunks, and track_objects when tracked), as a worker would."""
    response = upload(client, headers, video, **form)
    assert response.status_code == 202, response.json
    job_id = response.json["id"]
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.status, job.started_at, job.dispatched = JobStatus.PROCESSING, utcnow(), True
        job.frames_total, job.chunk_count = FRAMES, 1
        db.session.add(
            Chunk(
                job_id=job_id,
                index=0,
                start_frame=0,
                end_frame=FRAMES,
                seek_pts=0,
                frame_pts=list(range(FRAMES)),
                timestamps=[i / 10 for i in range(FRAMES)],
                frames=list(range(FRAMES)),
                status=ChunkStatus.DONE,
                frames_done=FRAMES,
                objects=FRAMES,
            )
        )
        for i in range(FRAMES):
            db.session.add(FrameDetections(job_id=job_id, index=i, timestamp=i / 10, objects=_objects(i)))
        db.session.commit()
        merge_chunks(None, job_id)
        if form.get("track"):
            track_objects.run(job_id)
    assert client.get(f"/api/jobs/{job_id}", headers=headers).json["status"] == "succeeded"
    return job_id


def _rendered(app, client, headers, job_id: str) -> None:
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    with app.app_context():
        assert render_job.run(job_id).get("frames") == FRAMES


def _sweep(app, now: datetime | None = None) -> int:
    with app.app_context():
        return sweep_videos(app.extensions["video_storage"], now)


def _video(client, headers, job_id: str) -> dict:
    return client.get(f"/api/jobs/{job_id}", headers=headers).json["video"]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_finished_job_records_when_its_videos_expire(app, client, auth: Auth, small_video):
    reconfigure(app, VIDEO_RETENTION_DAYS=2.5)
    headers = auth.headers()
    merged = _finished(app, client, headers, small_video)
    tracked = _finished(app, client, headers, small_video, track="true")
    cancelled = upload(client, headers, small_video).json["id"]
    assert client.post(f"/api/jobs/{cancelled}/cancel", headers=headers).status_code == 200
    for job_id in (merged, tracked, cancelled):
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json
        assert _when(job["video"]["expires_at"]) == _when(job["finished_at"]) + timedelta(days=2.5), job_id
        assert job["video"]["deleted_at"] is None
    running = upload(client, headers, small_video).json["id"]
    assert _video(client, headers, running)["expires_at"] is None  # not finished: no expiry yet
    reconfigure(app, VIDEO_RETENTION_DAYS=0)
    forever = _finished(app, client, headers, small_video)
    assert _video(client, headers, forever)["expires_at"] is None


def test_the_sweep_deletes_expired_videos_and_keeps_detections_tracks_and_exports(
    app, client, auth: Auth, small_video
):
    reconfigure(app, VIDEO_RETENTION_DAYS=1)
    headers = auth.headers()
    job_id = _finished(app, client, headers, small_video, track="true")
    _rendered(app, client, headers, job_id)
    assert len(stored_videos(app)) == 2 and render_row(app, job_id).key
    detections = client.get(f"/api/jobs/{job_id}/detections?limit=1000", headers=headers).json
    tracks = client.get(f"/api/jobs/{job_id}/tracks", headers=headers).json
    export = client.get(f"/api/jobs/{job_id}/export?format=jsonl", headers=headers).data
    token = client.post(f"/api/jobs/{job_id}/media-token", headers=headers).json["token"]
    # A day and a bit later, the watchdog's sweep deletes both files.
    day_ago = utcnow() - timedelta(days=1, minutes=5)
    update_job(app, job_id, finished_at=day_ago, video_expires_at=day_ago + timedelta(days=1))
    with app.app_context():
        assert watchdog()["videos_deleted"] == 1
    assert stored_videos(app) == []
    shown = client.get(f"/api/jobs/{job_id}", headers=headers).json
    assert _when(shown["video"]["expires_at"]) == day_ago + timedelta(days=1)
    deleted_at = _when(shown["video"]["deleted_at"])
    assert deleted_at >= _when(shown["video"]["expires_at"])
    assert shown["render"]["status"] == "succeeded" and shown["render"]["url"] is None
    # The videos answer 410, with the media token too; so does asking for a render.
    for response in (
        client.get(f"/api/jobs/{job_id}/video", headers=headers),
        client.get(f"/api/jobs/{job_id}/video?media_token={token}"),
        client.get(f"/api/jobs/{job_id}/video/annotated", headers=headers),
        client.post(f"/api/jobs/{job_id}/render", headers=headers),
    ):
        assert response.status_code == 410, response.request.path
        assert response.json["error"] == "gone"
        assert (
            "deleted" in response.json["message"] and shown["video"]["deleted_at"] in response.json["message"]
        )
        assert "detections, tracks and exports are still available" in response.json["message"]
    assert (
        "annotated video was deleted"
        in client.get(f"/api/jobs/{job_id}/video/annotated", headers=headers).json["message"]
    )
    # What the model found stays.
    assert client.get(f"/api/jobs/{job_id}/detections?limit=1000", headers=headers).json == detections
    assert len(detections["frames"]) == FRAMES
    assert client.get(f"/api/jobs/{job_id}/tracks", headers=headers).json == tracks
    assert tracks["tracks_total"] == 1
    again = client.get(f"/api/jobs/{job_id}/export?format=jsonl", headers=headers)
    assert again.status_code == 200 and again.data == export and len(export.splitlines()) == FRAMES
    # Deleting the job afterwards still works.
    assert client.delete(f"/api/jobs/{job_id}", headers=headers).status_code == 204


def test_unexpired_running_and_rendering_jobs_are_left_alone(app, client, auth: Auth, small_video):
    reconfigure(app, VIDEO_RETENTION_DAYS=1)
    headers = auth.headers()
    fresh = _finished(app, client, headers, small_video)
    queued = upload(client, headers, small_video).json["id"]
    processing = upload(client, headers, small_video).json["id"]
    rendering = _finished(app, client, headers, small_video)
    long_ago = utcnow() - timedelta(days=30)
    # Even with an expiry in the past, a job that is not finished keeps its video...
    update_job(app, queued, video_expires_at=long_ago)
    update_job(app, processing, status=JobStatus.PROCESSING, started_at=utcnow(), video_expires_at=long_ago)
    # ...and so does one whose annotated video is being drawn from it.
    assert client.post(f"/api/jobs/{rendering}/render", headers=headers).status_code == 202
    update_job(app, rendering, video_expires_at=long_ago)
    update_render(app, rendering, status=RenderStatus.RENDERING)
    before = sorted(stored_videos(app))
    assert len(before) == 4
    assert _sweep(app) == 0
    assert sorted(stored_videos(app)) == before
    for job_id in (fresh, queued, processing, rendering):
        assert job_row(app, job_id).video_deleted_at is None
    # Once the render has ended, the next sweep deletes that job's video, only that one.
    update_render(app, rendering, status=RenderStatus.FAILED)
    assert _sweep(app) == 1
    assert job_row(app, rendering).video_deleted_at is not None
    assert len(stored_videos(app)) == 3
    # In two days the fresh job expires too.
    assert _sweep(app, utcnow() + timedelta(days=2)) == 1
    assert job_row(app, fresh).video_deleted_at is not None
    assert job_row(app, processing).video_deleted_at is None and job_row(app, queued).video_deleted_at is None


def test_the_sweep_twice_and_an_already_missing_file_are_harmless(app, client, auth: Auth, small_video):
    reconfigure(app, VIDEO_RETENTION_DAYS=1)
    headers = auth.headers()
    first, second = (_finished(app, client, headers, small_video) for _ in range(2))
    storage = app.extensions["video_storage"]
    storage.path(job_row(app, second).storage_key).unlink()  # gone already (deleted by hand)
    later = utcnow() + timedelta(days=2)
    assert _sweep(app, later) == 2
    deleted = {job_id: job_row(app, job_id).video_deleted_at for job_id in (first, second)}
    assert all(deleted.values())
    assert stored_videos(app) == []
    assert _sweep(app, later + timedelta(hours=1)) == 0
    assert {job_id: job_row(app, job_id).video_deleted_at for job_id in (first, second)} == deleted
    assert client.get(f"/api/jobs/{second}/video", headers=headers).status_code == 410


def test_jobs_finished_before_retention_was_set_get_their_expiry_from_the_sweep(
    app, client, auth: Auth, small_video
):
    headers = auth.headers()
    old, recent = (_finished(app, client, headers, small_video) for _ in range(2))
    assert _video(client, headers, old)["expires_at"] is None  # retention off
    ten_days_ago, a_day_ago = utcnow() - timedelta(days=10), utcnow() - timedelta(days=1)
    update_job(app, old, finished_at=ten_days_ago)
    update_job(app, recent, finished_at=a_day_ago)
    reconfigure(app, VIDEO_RETENTION_DAYS=3)
    assert _sweep(app) == 1
    old_video, recent_video = _video(client, headers, old), _video(client, headers, recent)
    assert _when(old_video["expires_at"]) == ten_days_ago + timedelta(days=3)
    assert old_video["deleted_at"] is not None
    assert _when(recent_video["expires_at"]) == a_day_ago + timedelta(days=3)
    assert recent_video["deleted_at"] is None
    assert client.get(f"/api/jobs/{recent}/video", headers=headers).status_code == 200


def test_retention_0_keeps_videos_forever(app, client, auth: Auth, small_video):
    headers = auth.headers()
    kept = _finished(app, client, headers, small_video)
    update_job(app, kept, finished_at=utcnow() - timedelta(days=3650))
    with app.app_context():
        assert watchdog()["videos_deleted"] == 0
    assert _sweep(app, utcnow() + timedelta(days=36500)) == 0
    video = _video(client, headers, kept)
    assert video["expires_at"] is None and video["deleted_at"] is None
    assert len(stored_videos(app)) == 1
    # Retention set, then turned off again: expiries not reached yet no longer hold.
    reconfigure(app, VIDEO_RETENTION_DAYS=36500)
    dated = _finished(app, client, headers, small_video)
    assert _video(client, headers, dated)["expires_at"] is not None
    reconfigure(app, VIDEO_RETENTION_DAYS=0)
    assert _sweep(app, utcnow() + timedelta(days=36501)) == 0
    assert _video(client, headers, dated)["expires_at"] is None
    assert len(stored_videos(app)) == 2
    assert client.get(f"/api/jobs/{kept}/video", headers=headers).status_code == 200


def test_the_api_document_shows_the_expiry_and_410s(client):
    spec = client.get("/api/swagger.json").json
    video = spec["definitions"]["Video"]
    assert {"expires_at", "deleted_at"} <= set(video["required"])
    assert video["properties"]["deleted_at"]["format"] == "date-time"
    for path, method in (
        ("/jobs/{job_id}/video", "get"),
        ("/jobs/{job_id}/video/annotated", "get"),
        ("/jobs/{job_id}/render", "post"),
    ):
        gone = spec["paths"][path][method]["responses"]["410"]
        assert gone["schema"]["$ref"] == "#/definitions/Error"
        assert "VIDEO_RETENTION_DAYS" in gone["description"]
