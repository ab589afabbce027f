"""STORAGE_QUOTA_MB through the API: uploads and downloads past a user's quota are
refused and keep nothing, renders count, deleting frees, and /api/auth/me shows it."""

from __future__ import annotations

from datetime import timedelta

from detector.db import db
from detector.models import Job, JobStatus, utcnow
from detector.pipeline.tasks import download_video
from tests.api.conftest import job_row, update_job
from tests.api.test_jobs import job_count, stored_videos, upload
from tests.api.test_retention import _finished, _rendered, _sweep
from tests.conftest import Auth, reconfigure
from tests.integrations.servers import file_route, serve

MB = 1024 * 1024


def _refusal(quota: str, used: str, video: str | None = None) -> str:
    detail = f", this video is {video}" if video is not None else ""
    return f"storage quota {quota} exceeded: {used} used{detail}; deleting jobs frees their videos"


def _storage(client, headers) -> dict:
    me = client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200, me.json
    return me.json["storage"]


def _uses(app, job_id: str, size: int) -> None:
    """Make the job's stored video count ``size`` bytes (a large video, without sending one)."""
    update_job(app, job_id, video_bytes=size)


def test_an_upload_past_the_quota_is_413_and_keeps_nothing(app, client, auth: Auth, small_video):
    reconfigure(app, STORAGE_QUOTA_MB=5)
    headers = auth.headers()
    first = upload(client, headers, small_video)
    assert first.status_code == 202
    _uses(app, first.json["id"], int(4.8 * MB))
    kept = stored_videos(app)
    refused = upload(client, headers, data=b"\0" * int(0.4 * MB), filename="big.mp4")
    assert refused.status_code == 413
    assert refused.json == {
        "error": "quota_exceeded",
        "message": _refusal("5 MB", "4.8 MB", "0.4 MB"),
    }
    assert stored_videos(app) == kept  # no file kept, none left in the incoming area
    assert job_count(app) == 1
    # A video that fits is accepted; another user has a quota of their own.
    assert upload(client, headers, small_video).status_code == 202
    assert upload(client, auth.headers("bob"), data=b"\0" * int(0.4 * MB)).status_code == 415  # not a video


def test_deleting_a_job_frees_its_bytes(app, client, auth: Auth, small_video):
    reconfigure(app, STORAGE_QUOTA_MB=1)
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    _uses(app, job_id, MB)
    assert upload(client, headers, small_video).status_code == 413
    assert client.delete(f"/api/jobs/{job_id}", headers=headers).status_code == 204
    assert _storage(client, headers)["used_bytes"] == 0
    assert upload(client, headers, small_video).status_code == 202


def test_renders_count_and_me_shows_use_and_quota(app, client, auth: Auth, small_video):
    headers = auth.headers()
    size = small_video.stat().st_size
    assert _storage(client, headers) == {"used_bytes": 0, "quota_bytes": None}  # unlimited
    job_id = _finished(app, client, headers, small_video)
    assert job_row(app, job_id).video_bytes == size
    assert _storage(client, headers) == {"used_bytes": size, "quota_bytes": None}
    _rendered(app, client, headers, job_id)
    job = job_row(app, job_id)
    render = app.extensions["video_storage"].path(job.render_key).stat().st_size
    assert job.render_bytes == render > 0
    assert _storage(client, headers)["used_bytes"] == size + render
    # A quota with room for two uploads, but not for two uploads and the render.
    quota_mb = (2 * size + render // 2) / MB
    reconfigure(app, STORAGE_QUOTA_MB=quota_mb)
    assert _storage(client, headers) == {"used_bytes": size + render, "quota_bytes": int(quota_mb * MB)}
    refused = upload(client, headers, small_video)
    assert refused.status_code == 413
    assert refused.json["message"] == _refusal(
        f"{round(quota_mb, 3):g} MB", f"{(size + render) / MB:.1f} MB", f"{size / MB:.1f} MB"
    )
    # Videos the retention sweep deleted no longer count.
    reconfigure(app, VIDEO_RETENTION_DAYS=1)
    assert _sweep(app, utcnow() + timedelta(days=2)) == 1
    assert _storage(client, headers)["used_bytes"] == 0
    assert upload(client, headers, small_video).status_code == 202


def _submit_url(client, headers, url: str):
    return client.post(
        "/api/jobs", headers=headers, data={"source_url": url}, content_type="multipart/form-data"
    )


def test_a_source_url_job_is_refused_at_the_quota_and_failed_past_it(app, client, auth: Auth, small_video):
    reconfigure(app, ALLOW_PRIVATE_URLS=True, STORAGE_QUOTA_MB=5)
    headers = auth.headers()
    first = upload(client, headers, small_video).json["id"]
    video = small_video.read_bytes()
    routes = {"/big.mp4": file_route(b"\0" * int(0.4 * MB)), "/clip.mp4": file_route(video)}
    with serve(routes) as (base, _recorder):
        # At the quota: refused at submit, no job made.
        _uses(app, first, 5 * MB)
        refused = _submit_url(client, headers, base + "/clip.mp4")
        assert refused.status_code == 413
        assert refused.json == {"error": "quota_exceeded", "message": _refusal("5 MB", "5.0 MB")}
        assert job_count(app) == 1
        # Below it, accepted; a download that would pass it fails its job, keeping nothing.
        _uses(app, first, int(4.8 * MB))
        over = _submit_url(client, headers, base + "/big.mp4")
        fits = _submit_url(client, headers, base + "/clip.mp4")
        assert over.status_code == fits.status_code == 202
        kept = stored_videos(app)
        with app.app_context():
            assert "failed" in download_video.run(over.json["id"])
        assert stored_videos(app) == kept
        failed = client.get(f"/api/jobs/{over.json['id']}", headers=headers).json
        assert failed["status"] == "failed"
        assert failed["error"] == _refusal("5 MB", "4.8 MB", "0.4 MB")
        with app.app_context():
            assert download_video.run(fits.json["id"])["bytes"] == len(video)
            job = db.session.get(Job, fits.json["id"])
            assert job.status is JobStatus.QUEUED and job.video_bytes == len(video)
    assert len(stored_videos(app)) == len(kept) + 1
    assert _storage(client, headers)["used_bytes"] == int(4.8 * MB) + len(video)
