"""The service with VIDEO_STORAGE=s3://bucket/prefix, against moto's server: uploads
through the API, refusals that leave nothing in the bucket, renders, the media
endpoints' ranges, deletion, retention and quota."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from detector.db import db
from detector.models import Job
from detector.pipeline.download import download_video
from detector.pipeline.retention import measure_videos
from detector.storage.s3 import S3VideoStorage
from tests.api.conftest import job_row, render_row
from tests.api.test_jobs import upload
from tests.api.test_media import _rendered
from tests.conftest import Auth, base_config, reconfigure
from tests.integrations.servers import file_route, serve
from tests.storage.conftest import objects

PREFIX = "videos"


@pytest.fixture
def config(tmp_path: Path, bucket: str) -> dict[str, Any]:
    return base_config(tmp_path, VIDEO_STORAGE=f"s3://{bucket}/{PREFIX}")


def _keys(bucket: str, endpoint: str) -> set[str]:
    return {o["Key"].removeprefix(f"{PREFIX}/") for o in objects(bucket, endpoint)}


def test_an_upload_is_stored_in_the_bucket_and_a_refused_one_leaves_nothing(
    app, client, auth: Auth, small_video, bucket, s3_env
):
    endpoint = s3_env["S3_ENDPOINT_URL"]
    storage = app.extensions["video_storage"]
    assert isinstance(storage, S3VideoStorage)
    headers = auth.headers()
    assert upload(client, headers, data=b"not a video at all" * 100).status_code == 415
    assert _keys(bucket, endpoint) == set()
    response = upload(client, headers, small_video)
    assert response.status_code == 202, response.json
    job = job_row(app, response.json["id"])
    assert _keys(bucket, endpoint) == {job.storage_key}
    assert job.video_bytes == small_video.stat().st_size == storage.size(job.storage_key)
    assert response.json["video"]["frame_count"] == 20
    assert client.delete(f"/api/jobs/{job.id}", headers=headers).status_code == 204
    assert _keys(bucket, endpoint) == set()
    uploads = storage.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []


def test_url_downloads_stream_into_the_bucket_and_start_over_when_they_must(
    app, client, auth: Auth, small_video, bucket, s3_env
):
    """One server resumes a cut-off transfer with Range; one without Range support
    makes the download start over (its upload truncated); a page that is not a
    video leaves nothing."""
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    headers = auth.headers()
    data = small_video.read_bytes()
    routes = {
        "/resumed.mp4": file_route(data, cut_first_at=len(data) // 2),
        "/restarted.mp4": file_route(data, ranges=False, cut_first_at=len(data) // 2),
        "/page.mp4": file_route(b"<html>" * 300),
    }
    jobs = {}
    with serve(routes) as (base, _recorder):
        for name in routes:
            form = {"source_url": base + name}
            response = client.post(
                "/api/jobs", headers=headers, content_type="multipart/form-data", data=form
            )
            assert response.status_code == 202, response.json
            jobs[name] = response.json["id"]
            with app.app_context():
                download_video.run(jobs[name])
    stored = set()
    for name in ("/resumed.mp4", "/restarted.mp4"):
        job = job_row(app, jobs[name])
        assert job.status.value == "queued", (name, job.error)
        with app.app_context():
            source = app.extensions["video_storage"].source(job.storage_key)
            with source.open() as video:
                assert video.read() == data, name
        stored.add(job.storage_key)
    assert job_row(app, jobs["/page.mp4"]).status.value == "failed"
    assert _keys(bucket, s3_env["S3_ENDPOINT_URL"]) == stored
    storage = app.extensions["video_storage"]
    assert storage.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("which", ["video", "video/annotated"])
def test_media_ranges_are_read_from_the_bucket(app, client, auth: Auth, small_video, which, bucket, s3_env):
    headers = auth.headers()
    job_id = _rendered(app, client, headers, small_video)
    job = job_row(app, job_id)
    assert _keys(bucket, s3_env["S3_ENDPOINT_URL"]) == {job.storage_key, render_row(app, job_id).key}
    url = f"/api/jobs/{job_id}/{which}"
    whole = client.get(url, headers=headers)
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    data = whole.get_data()
    size = len(data)
    assert int(whole.headers["Content-Length"]) == size > 1000
    assert whole.headers["ETag"]
    if which == "video":
        assert data == small_video.read_bytes()
    for header, first, last in [
        ("bytes=0-99", 0, 99),
        (f"bytes=100-{size // 2}", 100, size // 2),
        ("bytes=-50", size - 50, size - 1),
        (f"bytes={size - 5}-{size + 100}", size - 5, size - 1),
    ]:
        part = client.get(url, headers={**headers, "Range": header})
        assert part.status_code == 206, header
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}", header
        assert part.get_data() == data[first : last + 1], header
    assert client.get(url, headers={**headers, "Range": f"bytes={size + 10}-"}).status_code == 416
    again = client.get(url, headers={**headers, "If-None-Match": whole.headers["ETag"]})
    assert again.status_code == 304


def test_retention_measures_the_bucket_objects(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    with app.app_context():
        db.session.execute(update(Job).where(Job.id == job_id).values(video_bytes=None))
        db.session.commit()
        measure_videos(app.extensions["video_storage"])
        assert db.session.get(Job, job_id).video_bytes == small_video.stat().st_size
