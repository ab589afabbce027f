"""The web app on real content, and the pictures of it in README.md and docs/web.md.

A live service (API on loopback, real processor and detector workers) runs the
shared SSD MobileNet V2 (COCO), declared in a DETECTOR_MODELS file. Through the
page, a user registers and uploads the first 20 seconds of the shared street
video (vtest.avi, made H.264 MP4 here so that the browser plays it): once
tracked, every frame, and once every 5th frame, people only. The job list shows
both done; the job's page draws real people's boxes over the video.

With DETECTOR_SCREENSHOTS=1 the two pages are saved as docs/images/web-jobs.png
and docs/images/web-job.png. Without the shared test data these tests skip, and
fail under CI=true (tests/shared_data.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from detector.app import create_app
from detector.db.migrate import upgrade
from tests.client.conftest import live_server
from tests.conftest import base_config
from tests.pipeline.conftest import Workers
from tests.pipeline.test_real_video import wait_online
from tests.shared_data import PERSON, SharedData, require_testdata, ssd_catalog
from tests.web.conftest import register, screenshot
from tests.web.test_browser import (
    alpha_at,
    expected_frame,
    geometry,
    row,
    seek,
    show_original_with_boxes,
    to_screen,
)

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
SECONDS = 20
THRESHOLD = 0.4


def street_mp4(data: SharedData, path: Path, seconds: int = SECONDS) -> Path:
    """The first ``seconds`` of vtest.avi as H.264 MP4 (yuv420p), which browsers play."""
    with av.open(str(data.video)) as source, av.open(str(path), "w") as out:
        stream_in = source.streams.video[0]
        rate = Fraction(stream_in.average_rate or 10)
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        stream.options = {"crf": "20", "g": "50"}
        for i, frame in enumerate(source.decode(stream_in)):
            if i >= seconds * rate:
                break
            picture = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            picture.pts = i
            picture.time_base = 1 / rate
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def real_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Any]]:
    """The service's URL on the shared SSD, the street clip, and the Flask app."""
    data = require_testdata()
    tmp = tmp_path_factory.mktemp("web-real")
    catalog = ssd_catalog(data, tmp / "models.toml")
    config = base_config(tmp, DETECTOR_MODELS=str(catalog), DETECTOR_DEVICE="cpu", CHUNK_FRAMES=50)
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    video = street_mp4(data, tmp / "street.mp4")
    logs = tmp / "logs"
    logs.mkdir()
    with live_server(app) as url, Workers(config, logs, models=("ssd",)):
        yield url, video, app
    from detector.db import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _upload(page: Any, video: Path, **fields: str) -> str:
    """Upload ``video`` through the form with ``fields`` filled in; the job's id."""
    page.set_input_files("#upload-video", str(video))
    page.fill("#upload-score_threshold", str(THRESHOLD))
    for name, value in fields.items():
        if name == "track":
            page.check("#upload-track")
        else:
            page.fill(f"#upload-{name}", value)
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as made:
        page.click("#upload-form button[type=submit]")
    assert made.value.status == 202, made.value.json()
    for name in fields:
        if name == "track":
            page.uncheck("#upload-track")
        else:
            page.fill(f"#upload-{name}", "")
    return str(made.value.json()["id"])


def test_the_pages_show_real_people_found_in_a_real_video(real_service, browser_page: Any) -> None:
    url, video, app = real_service
    watched = browser_page(url)
    page = watched.page
    register(page, "alice", PASSWORD)
    client = app.test_client()
    login = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).json
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    wait_online(client, headers, "ssd")
    tracked = _upload(page, video, track="true")
    people = _upload(page, video, frame_stride="5", classes="person")
    for job_id in (tracked, people):
        page.wait_for_selector(f'tr[data-job-id="{job_id}"][data-status="succeeded"]', timeout=300_000)
    assert int(row(page, tracked).locator(".col-objects").text_content() or 0) > SECONDS * 10 * 2
    page.evaluate("() => document.activeElement?.blur()")  # no focus ring in the picture
    screenshot(page, "web-jobs.png")

    # The tracked job's page: the frame with the most people, their boxes drawn where they are.
    frames = client.get(f"/api/jobs/{tracked}/detections?start=0&limit=1000", headers=headers).json["frames"]
    assert len(frames) == SECONDS * 10
    frame = max(frames, key=lambda f: sum(o["class_id"] == PERSON for o in f["objects"]))
    walkers = [o for o in frame["objects"] if o["class_id"] == PERSON]
    assert len(walkers) >= 5

    page.goto(f"/#/jobs/{tracked}")
    page.wait_for_function("() => document.querySelector('video.video')?.readyState >= 2")
    show_original_with_boxes(page)
    seek(page, frame["timestamp"], expected_frame(frames, frame["timestamp"]))
    g = geometry(page)
    assert (g["vw"], g["vh"]) == (768, 576)
    for walker in walkers:
        x1, y1, _, y2 = to_screen(walker["box"], g)
        assert alpha_at(page, x1, (y1 + y2) / 2) > 0, walker  # the box's left edge is drawn
    shown = page.locator(".here").text_content() or ""
    assert (
        f"frame {frame['frame']} · {len(frame['objects'])} of {len(frame['objects'])} objects shown" in shown
    )
    page.click(".objects-box summary")
    screenshot(page, "web-job.png")
    watched.assert_clean()
