"""Webhooks and source_url downloads through real worker processes (embedded mode:
SQLite and the filesystem broker), against HTTP servers on 127.0.0.1 only
(ALLOW_PRIVATE_URLS=true lets the service reach them)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detector.app import create_app
from detector.db.migrate import upgrade
from tests.conftest import Auth, base_config
from tests.integrations.docs_code import documented_verify
from tests.integrations.servers import Recorder, answer, file_route, serve, unsized_route
from tests.pipeline.conftest import Workers, assert_same_detections, detector_config, wait_for_job

pytestmark = pytest.mark.slow

LIMIT_MB = 1


class Service:
    def __init__(
        self,
        client: Any,
        headers: dict[str, str],
        secret: str,
        hooks: str,
        recorder: Recorder,
        files: str,
        file_hits: Recorder,
        workers: Workers,
    ) -> None:
        self.client, self.headers, self.secret = client, headers, secret
        self.hooks, self.recorder, self.files, self.file_hits = hooks, recorder, files, file_hits
        self.workers = workers

    def submit(self, **form: Any) -> dict[str, Any]:
        response = self.client.post(
            "/api/jobs", headers=self.headers, content_type="multipart/form-data", data=form
        )
        assert response.status_code == 202, response.json
        return response.json

    def finish(self, job_id: str) -> dict[str, Any]:
        job = wait_for_job(self.client, self.headers, job_id, timeout=240)
        return job

    def frames(self, job_id: str) -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        start: int | None = 0
        while start is not None:
            page = self.client.get(
                f"/api/jobs/{job_id}/detections?start={start}&limit=50", headers=self.headers
            ).json
            frames += page["frames"]
            start = page["next_start"]
        return frames

    def deliveries(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"/api/jobs/{job_id}/webhook", headers=self.headers).json


def _flaky(handler, request, seen):
    answer(handler, 500 if seen < 2 else 200, b"not now" if seen < 2 else b"ok")


@pytest.fixture(scope="module")
def video_bytes(e2e_video: Path) -> bytes:
    return e2e_video.read_bytes()


@pytest.fixture(scope="module")
def service(tmp_path_factory, seeded_weights, video_bytes) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("urls")
    config = base_config(
        tmp,
        **detector_config(seeded_weights),
        ALLOW_PRIVATE_URLS=True,
        WEBHOOK_BACKOFF_SECONDS=0.5,
        MAX_UPLOAD_MB=LIMIT_MB,  # the workers' download limit (the env var they read)
        DOWNLOAD_ATTEMPTS=3,
    )
    assert len(video_bytes) < LIMIT_MB * 1024 * 1024
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    secret = client.post("/api/auth/webhook-secret", headers=headers).json["secret"]
    hook_routes = {"/ok": lambda h, r, n: answer(h, 200, b"thanks"), "/flaky": _flaky}
    half = len(video_bytes) // 2
    file_routes = {
        "/clip.mp4": file_route(video_bytes, cut_first_at=half),
        "/plain.mp4": file_route(video_bytes, ranges=False),
        "/page.html": file_route(b"<html><body>hello</body></html>", content_type="text/html; charset=utf-8"),
        "/fake.mp4": file_route(b"<html><body>not a video</body></html>" * 10, content_type="video/mp4"),
        "/big.mp4": file_route(b"\0" * (LIMIT_MB * 1024 * 1024 + 1)),
        "/endless.mp4": unsized_route(3 * LIMIT_MB * 1024 * 1024),
    }
    with serve(hook_routes) as (hooks, recorder), serve(file_routes) as (files, file_hits):
        (tmp / "logs").mkdir()
        with Workers(config, tmp / "logs") as workers:
            yield Service(client, headers, secret, hooks, recorder, files, file_hits, workers)
    from detector.db import db

    db.session.remove()


def _events(service: Service, path: str, count: int) -> list[dict[str, Any]]:
    got = service.recorder.wait_for(path, count)
    verify = documented_verify()
    for r in got:
        assert verify(service.secret, r.headers["Detector-Signature"], r.body), r.headers
    return [json.loads(r.body) for r in got]


def test_a_url_job_equals_the_upload_and_each_end_sends_one_signed_event(service, e2e_video, video_bytes):
    uploaded = service.submit(
        video=(io.BytesIO(video_bytes), e2e_video.name),
        score_threshold="0.3",
        callback_url=service.hooks + "/ok?job=upload",
    )
    fetched = service.submit(
        source_url=service.files + "/clip.mp4",
        score_threshold="0.3",
        callback_url=service.hooks + "/ok?job=url",
    )
    assert fetched["status"] == "downloading"
    up, url = service.finish(uploaded["id"]), service.finish(fetched["id"])
    assert up["status"] == url["status"] == "succeeded", (up, url, service.workers.logs())
    assert url["bytes_downloaded"] == url["bytes_total"] == len(video_bytes)
    assert url["filename"] == "clip.mp4"
    assert url["video"] == {**up["video"], "frame_count": up["video"]["frame_count"]}
    assert url["progress"]["frames_total"] == up["progress"]["frames_total"] == 80
    assert_same_detections(service.frames(url["id"]), service.frames(up["id"]))
    # The first transfer was cut halfway; the second resumed where it ended.
    ranges = [r.headers.get("Range") for r in service.file_hits.of("/clip.mp4")]
    assert ranges == [None, f"bytes={len(video_bytes) // 2}-"]

    for path, job in (("/ok?job=upload", up), ("/ok?job=url", url)):
        (event,) = _events(service, path, 1)
        assert event["type"] == "job.succeeded" and event["id"].startswith("evt_")
        assert event["job"]["id"] == job["id"] and event["job"]["status"] == "succeeded"
        assert event["job"]["objects_total"] == job["objects_total"]
        assert event["job"]["frames_total"] == 80 and event["job"]["error"] is None
        assert event["job"]["links"]["detections"] == job["detections_url"]
    time.sleep(3)  # nothing more comes: exactly one event per job end
    assert len(service.recorder.of("/ok")) == 2
    (delivery,) = service.deliveries(url["id"])["events"]
    assert delivery["status"] == "delivered" and [a["status_code"] for a in delivery["attempts"]] == [200]


def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt(service):
    job = service.submit(source_url=service.files + "/plain.mp4", callback_url=service.hooks + "/flaky")
    service.client.post(f"/api/jobs/{job['id']}/cancel", headers=service.headers)
    events = _events(service, "/flaky", 3)
    assert {e["id"] for e in events} == {events[0]["id"]}  # the same event every time
    assert events[0]["type"] == "job.cancelled" and events[0]["job"]["status"] == "cancelled"
    hits = service.recorder.of("/flaky")
    assert hits[2].at - hits[1].at >= 0.9 * (hits[1].at - hits[0].at) > 0  # back-off: 0.5 s, then 1 s
    deadline = time.monotonic() + 10
    while (delivery := service.deliveries(job["id"])["events"][0])["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert delivery["status"] == "delivered"
    assert [(a["status_code"], a["error"]) for a in delivery["attempts"]] == [
        (500, "HTTP 500"),
        (500, "HTTP 500"),
        (200, None),
    ]
    time.sleep(2)
    assert len(service.recorder.of("/flaky")) == 3


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/page.html", "the video could not be downloaded: the URL gave text/html, not a video"),
        ("/fake.mp4", "the source_url did not give a video: "),
        ("/missing.mp4", "the video could not be downloaded: the server answered HTTP 404"),
        ("/big.mp4", f"larger than the upload limit of {LIMIT_MB} MB (MAX_UPLOAD_MB): the server announces"),
        ("/endless.mp4", f"larger than the upload limit of {LIMIT_MB} MB (MAX_UPLOAD_MB): more than"),
    ],
)
def test_a_url_that_gives_no_usable_video_fails_the_job_clearly(service, path, reason):
    hook = f"/ok?fail={path}"
    job = service.submit(source_url=service.files + path, callback_url=service.hooks + hook)
    done = service.finish(job["id"])
    assert done["status"] == "failed", done
    assert reason in done["error"], done["error"]
    (event,) = _events(service, hook, 1)
    assert event["type"] == "job.failed" and event["job"]["error"] == done["error"]
    if path == "/big.mp4":
        assert done["bytes_downloaded"] == 0  # refused before reading
    if path == "/endless.mp4":
        assert done["bytes_downloaded"] <= LIMIT_MB * 1024 * 1024
