"""The web app in headless Chromium against a real service: the API on loopback and
real processor, detector and render workers with seeded random weights.

Everything a user does goes through the page (forms, the file input, buttons,
the mouse); what the page shows is checked against what the API answers for
the same job, down to the overlay's pixels on a known frame.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from detector.app import create_app
from detector.db.migrate import upgrade
from detector.video.synthetic import make_video
from tests.client.conftest import live_server
from tests.conftest import base_config
from tests.pipeline.conftest import Workers, detector_config, seeded_weights, wait_for_job  # noqa: F401 (fixture)
from tests.web.conftest import PHONE, Watched, register

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
HOSTILE = "<img src=x onerror=alert(1)>.mp4"
FRAMES, WIDTH, HEIGHT, FPS = 30, 160, 96, 10
THRESHOLD = 0.05  # the model's floor (DETECTOR_MIN_SCORE): random weights find boxes above it
REFRESH_COOKIE = "refresh_token_cookie"
CSRF_COOKIE = "csrf_refresh_token"


@dataclass
class Service:
    url: str
    app: Flask
    workers: Workers
    video: Path

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def headers(self, username: str) -> dict[str, str]:
        client = self.client()
        client.post("/api/auth/register", json={"username": username, "password": PASSWORD})
        login = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert login.status_code == 200, login.json
        return {"Authorization": f"Bearer {login.json['access_token']}"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, seeded_weights: Path) -> Iterator[Service]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("web")
    # Chunks of 8 frames (a keyframe every 8): the 30-frame video is 4 chunks, so
    # the progress bar has steps to show.
    config = base_config(tmp, **{**detector_config(seeded_weights), "CHUNK_FRAMES": 8})
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    video = make_video(tmp / "clip.mp4", frames=FRAMES, width=WIDTH, height=HEIGHT, fps=FPS, gop=8)
    logs = tmp / "logs"
    logs.mkdir()
    with live_server(app) as url, Workers(config, logs) as workers:
        workers.start("render")
        yield Service(url, app, workers, video)
    from detector.db import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def done_job(service: Service) -> dict[str, Any]:
    """A tracked job made through the API, succeeded, with its detections (for the player tests)."""
    headers = service.headers("bob")
    client = service.client()
    with service.video.open("rb") as video:
        answer = client.post(
            "/api/jobs",
            headers=headers,
            data={"video": (video, "street.mp4"), "score_threshold": str(THRESHOLD), "track": "true"},
            content_type="multipart/form-data",
        )
    assert answer.status_code == 202, answer.json
    job = wait_for_job(client, headers, answer.json["id"])
    assert job["status"] == "succeeded", (job, service.workers.logs())
    page = client.get(f"/api/jobs/{job['id']}/detections?start=0&limit=1000", headers=headers).json
    assert page["next_start"] is None
    return {"job": job, "headers": headers, "frames": page["frames"], "username": "bob"}


def sign_in(watched: Watched, username: str) -> None:
    page = watched.page
    page.goto("/#/signin")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.auth button[type=submit]")
    page.wait_for_selector("#sign-out")


def row(page: Any, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


# --- Signing in, uploading, progress ----------------------------------------------------


def test_register_upload_follow_cancel_and_delete(service: Service, browser_page: Any, tmp_path: Path):
    watched = browser_page(service.url)
    page = watched.page
    with page.expect_response(lambda r: r.url.endswith("/api/auth/session")) as signed_in:
        register(page, "alice", PASSWORD)
    assert signed_in.value.status == 200
    assert page.locator(".account .user").text_content() == "alice"
    page.wait_for_selector(".list-state:has-text('No jobs yet')")

    # The tokens: the refresh token in an HttpOnly cookie no script reads, the
    # access token nowhere but the page's memory.
    access = signed_in.value.json()["access_token"]
    api = {"Authorization": f"Bearer {access}"}
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies[REFRESH_COOKIE]["httpOnly"] is True
    assert cookies[REFRESH_COOKIE]["sameSite"] == "Strict"
    assert cookies[REFRESH_COOKIE]["path"] == "/api/auth/session"
    assert cookies[CSRF_COOKIE]["httpOnly"] is False
    readable, local, session = page.evaluate(
        "() => [document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage)]"
    )
    assert CSRF_COOKIE in readable and REFRESH_COOKIE not in readable
    assert access not in readable + local + session
    assert local == session == "{}"

    # The model's labels are offered for the classes field.
    page.wait_for_selector("#upload-labels option[value=person]", state="attached")

    page.set_input_files("#upload-video", str(service.video))
    page.fill("#upload-score_threshold", str(THRESHOLD))
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as made:
        page.click("#upload-form button[type=submit]")
    assert made.value.status == 202
    job_id = made.value.json()["id"]
    assert made.value.request.headers.get("idempotency-key")
    page.wait_for_selector(".upload-progress-text:has-text('Uploaded')")

    # The job's progress bar, sampled until the job is done: it moves, never back.
    the_row = row(page, job_id)
    seen: list[tuple[str, float]] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = the_row.get_attribute("data-status") or ""
        value = float(the_row.locator("progress").evaluate("p => p.position < 0 ? 0 : p.value"))
        if not seen or seen[-1] != (status, value):
            seen.append((status, value))
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert seen[-1] == ("succeeded", 100.0), (seen, service.workers.logs())
    assert seen[0][0] in ("queued", "processing")  # it was shown before it was done
    values = [value for _, value in seen]
    assert values == sorted(values)
    assert "100 %" in the_row.locator(".progress-text").text_content()
    job = service.client().get(f"/api/jobs/{job_id}", headers=api).json
    assert job["objects_total"] > 0
    assert the_row.locator(".col-objects").text_content() == str(job["objects_total"])
    assert the_row.locator(".col-duration").text_content() == "3.00 s"
    assert the_row.locator("a.filename").text_content() == "clip.mp4"

    # A refused upload shows the API's own message.
    video_bytes = service.video.read_bytes()
    page.set_input_files(
        "#upload-video", files=[{"name": "both.mp4", "mimeType": "video/mp4", "buffer": video_bytes}]
    )
    page.fill("#upload-sample_fps", "5")
    page.fill("#upload-frame_stride", "2")
    page.click("#upload-form button[type=submit]")
    refused = page.locator("#upload-form .error")
    refused.wait_for()
    assert refused.text_content() == "sample_fps and frame_stride: give one or the other, not both"
    watched.expect_console_error("status of 400")

    # Every option, through the form's fields: a span, a rate, classes (ticked and typed), tracking.
    page.fill("#upload-frame_stride", "")
    page.fill("#upload-start", "0.5")
    page.fill("#upload-end", "2.5")
    page.click(".label-chooser summary")
    page.check(".label-chooser input[value=person]")
    page.fill("#upload-classes", page.input_value("#upload-classes") + ", car")
    assert page.is_checked(".label-chooser input[value=person]")
    page.check("#upload-track")
    page.set_input_files(
        "#upload-video", files=[{"name": "street.mp4", "mimeType": "video/mp4", "buffer": video_bytes}]
    )
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as made:
        page.click("#upload-form button[type=submit]")
    assert made.value.status == 202, made.value.json()
    options_job = made.value.json()
    assert options_job["options"] == {
        "sample_fps": 5.0, "frame_stride": None, "start": 0.5, "end": 2.5,
        "classes": ["person", "car"], "track": True, "model": "default",
    }  # fmt: skip
    assert options_job["score_threshold"] == THRESHOLD  # the field kept its value
    assert refused.is_hidden()

    # A longer video, cancelled from its row while it runs.
    for name in ("#upload-start", "#upload-end", "#upload-sample_fps", "#upload-classes"):
        page.fill(name, "")
    page.uncheck("#upload-track")
    long_video = make_video(tmp_path / "long.mp4", frames=200, width=WIDTH, height=HEIGHT, fps=FPS, gop=8)
    page.set_input_files("#upload-video", str(long_video))
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as made:
        page.click("#upload-form button[type=submit]")
    long_id = made.value.json()["id"]
    long_row = row(page, long_id)
    long_row.locator("button:has-text('Cancel')").click()
    page.wait_for_selector(f'tr[data-job-id="{long_id}"][data-status="cancelled"]')
    assert long_row.locator("button:has-text('Cancel')").is_hidden()
    assert service.client().get(f"/api/jobs/{long_id}", headers=api).json["status"] == "cancelled"

    page.wait_for_selector(f'tr[data-job-id="{options_job["id"]}"][data-status="succeeded"]', timeout=240_000)
    assert page.locator("tr[data-job-id]").count() == 3

    # Delete asks once more on the button, then the job is gone.
    delete = long_row.locator("button.danger")
    delete.click()
    assert delete.text_content() == "Really delete?"
    assert service.client().get(f"/api/jobs/{long_id}", headers=api).status_code == 200
    delete.click()
    long_row.wait_for(state="detached")
    assert service.client().get(f"/api/jobs/{long_id}", headers=api).status_code == 404
    assert page.locator("tr[data-job-id]").count() == 2
    watched.assert_clean()


# --- The job page -------------------------------------------------------------------------


def expected_frame(frames: list[dict[str, Any]], time_s: float) -> int | None:
    """The analysed frame at or before a media time (the page's rule, 2 ms tolerance)."""
    at = [f["frame"] for f in frames if f["timestamp"] <= time_s + 0.002]
    return at[-1] if at else None


def geometry(page: Any) -> dict[str, float]:
    return page.evaluate(
        """() => { const v = document.querySelector('video.video');
                   const c = document.querySelector('canvas.overlay').getBoundingClientRect();
                   return {cw: v.clientWidth, ch: v.clientHeight, vw: v.videoWidth, vh: v.videoHeight,
                           left: c.left, top: c.top}; }"""
    )


def to_screen(box: list[float], g: dict[str, float]) -> tuple[float, float, float, float]:
    """A stored-frame box in overlay pixels: letterboxed like object-fit: contain (rotation 0)."""
    scale = min(g["cw"] / g["vw"], g["ch"] / g["vh"])
    ox, oy = (g["cw"] - g["vw"] * scale) / 2, (g["ch"] - g["vh"] * scale) / 2
    return ox + box[0] * scale, oy + box[1] * scale, ox + box[2] * scale, oy + box[3] * scale


def alpha_at(page: Any, x: float, y: float) -> int:
    """The most opaque overlay pixel in the 3x3 pixels around (x, y)."""
    return int(
        page.evaluate(
            """([x, y]) => { const c = document.querySelector('canvas.overlay');
                 const r = window.devicePixelRatio || 1;
                 const d = c.getContext('2d').getImageData(Math.round(x * r) - 1, Math.round(y * r) - 1, 3, 3).data;
                 let a = 0; for (let i = 3; i < d.length; i += 4) a = Math.max(a, d[i]); return a; }""",
            [x, y],
        )
    )


def painted_pixels(page: Any) -> int:
    return int(
        page.evaluate(
            """() => { const c = document.querySelector('canvas.overlay');
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n += 1; return n; }"""
        )
    )


def show_original_with_boxes(page: Any) -> None:
    """The original video with the overlay on (the page starts on the annotated video once it exists)."""
    if page.locator("#video-source option[value=annotated]").count():
        page.select_option("#video-source", "original")
        page.wait_for_function(
            "() => document.querySelector('video.video').src.includes('/video?media_token=')"
        )
        page.wait_for_function("() => document.querySelector('video.video').readyState >= 2")
    page.check("#show-boxes")


def seek(page: Any, time_s: float, frame: int | None) -> None:
    page.evaluate("t => { document.querySelector('video.video').currentTime = t; }", time_s)
    page.wait_for_function(
        "f => document.querySelector('canvas.overlay').dataset.frame === f",
        arg="" if frame is None else str(frame),
    )


def pick_object(frames: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A frame and its largest object whose box lies well inside the picture."""
    candidates = [
        (f, o)
        for f in frames
        for o in f["objects"]
        if o["box"][0] >= 3 and o["box"][1] >= 20 and o["box"][2] <= WIDTH - 3 and o["box"][3] <= HEIGHT - 3
        and o["box"][2] - o["box"][0] >= 12 and o["box"][3] - o["box"][1] >= 12
    ]  # fmt: skip
    assert candidates, "no box inside the picture: the seeded weights found nothing to draw"
    return max(
        candidates, key=lambda fo: (fo[1]["box"][2] - fo[1]["box"][0]) * (fo[1]["box"][3] - fo[1]["box"][1])
    )


def test_the_player_draws_the_detections_in_step_with_the_video(
    service: Service, done_job: dict[str, Any], browser_page: Any
):
    job, frames = done_job["job"], done_job["frames"]
    watched = browser_page(service.url)
    page = watched.page
    sign_in(watched, done_job["username"])
    detection_requests: list[str] = []
    page.on("request", lambda r: detection_requests.append(r.url) if "/detections?" in r.url else None)
    # Pages of 8 frame indexes, so that paging shows on a 30-frame video.
    page.goto(f"/#/jobs/{job['id']}?frames_per_page=8")
    page.wait_for_function("() => document.querySelector('video.video')?.readyState >= 2")
    show_original_with_boxes(page)
    assert page.locator("h1.job-title").text_content() == "street.mp4"
    assert "/video?media_token=" in page.eval_on_selector("video.video", "v => v.src")
    page.wait_for_function("() => document.querySelector('canvas.overlay').dataset.frame === '0'")

    # Detections are paged around the playhead: the page at 0, then (after a seek to
    # frame 20) the page holding frame 20 and the next one, never the pages between.
    seek(page, frames[20]["timestamp"], expected_frame(frames, frames[20]["timestamp"]))
    page.wait_for_function("() => document.querySelectorAll('.class-filter input').length > 0")
    playhead_starts = sorted(
        int(url.split("start=")[1].split("&")[0]) for url in detection_requests if url.endswith("limit=8")
    )
    assert playhead_starts == [0, 16, 24], detection_requests
    # (The timeline's background pages are separate requests of 1000 frames.)
    page.wait_for_selector("canvas.timeline[data-complete='1']", state="attached")
    assert any(url.endswith("start=0&limit=1000") for url in detection_requests)

    # A known frame: its box's edges are drawn where the box is on screen.
    frame, target = pick_object(frames)
    seek(page, frame["timestamp"], frame["frame"])
    g = geometry(page)
    assert (g["vw"], g["vh"]) == (WIDTH, HEIGHT)
    x1, y1, x2, y2 = to_screen(target["box"], g)
    middle_y, middle_x = (y1 + y2) / 2, (x1 + x2) / 2
    assert alpha_at(page, x1, middle_y) > 0  # left edge
    assert alpha_at(page, middle_x, y2) > 0  # bottom edge
    assert alpha_at(page, x2, middle_y) > 0  # right edge
    shown = page.locator(".here").text_content()
    assert (
        f"frame {frame['frame']} · {len(frame['objects'])} of {len(frame['objects'])} objects shown" in shown
    )

    # Hover names the smallest box under the pointer. The pointer goes to a whole
    # pixel of the page, as a mouse's does, and the boxes under it are found where
    # they are on screen: a box edge a fraction of a pixel from the target's centre
    # is then on the same side of the pointer here as in the page.
    px, py = round(g["left"] + middle_x), round(g["top"] + middle_y)
    x, y = px - g["left"], py - g["top"]
    on_screen = [(o, to_screen(o["box"], g)) for o in frame["objects"]]
    under = [(o, r) for o, r in on_screen if r[0] <= x <= r[2] and r[1] <= y <= r[3]]
    smallest, _ = min(under, key=lambda orr: (orr[1][2] - orr[1][0]) * (orr[1][3] - orr[1][1]))
    page.mouse.move(px, py)
    tip = page.locator(".tip")
    tip.wait_for(state="visible")
    text = f"{smallest['label']} {smallest['score']:.2f}"
    if smallest.get("track_id") is not None:
        text += f" · track {smallest['track_id']}"
    assert tip.text_content() == text

    # The score slider acts at once: at 1 nothing is drawn; back down, the boxes return.
    page.locator("#min-score").fill("1")
    assert painted_pixels(page) == 0
    assert "0 of" in page.locator(".here").text_content()
    page.locator("#min-score").fill(str(THRESHOLD))
    assert alpha_at(page, x1, middle_y) > 0
    # The class filter too: no class, nothing drawn; one class off, its objects gone.
    page.click(".class-filter button:has-text('None')")
    assert painted_pixels(page) == 0
    page.click(".class-filter button:has-text('All')")
    assert alpha_at(page, x1, middle_y) > 0
    page.locator(f".class-filter label[data-label='{target['label']}'] input").uncheck()
    others = sum(1 for o in frame["objects"] if o["label"] != target["label"])
    assert f"{others} of {len(frame['objects'])} objects shown" in page.locator(".here").text_content()
    page.locator(f".class-filter label[data-label='{target['label']}'] input").check()

    # Playing: every frame drawn is the analysed frame at the video's media time.
    seek(page, 0, expected_frame(frames, 0))
    page.evaluate("() => document.querySelector('video.video').play()")
    samples: list[tuple[str, str]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sample = page.eval_on_selector("canvas.overlay", "c => [c.dataset.frame, c.dataset.time]")
        samples.append(tuple(sample))
        if page.eval_on_selector("video.video", "v => v.ended"):
            break
        time.sleep(0.05)
    drawn = [(int(f), float(t)) for f, t in samples if f]
    assert len({f for f, _ in drawn}) >= 10, samples  # it moved with the video, frame by frame
    for drawn_frame, media_time in drawn:
        assert drawn_frame == expected_frame(frames, media_time), (drawn_frame, media_time)
    assert [f for f, _ in drawn] == sorted(f for f, _ in drawn)

    # The timeline seeks where it is clicked.
    box = page.locator("canvas.timeline").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    assert page.eval_on_selector("video.video", "v => v.currentTime") == pytest.approx(
        job["video"]["duration"] * 0.5, abs=0.05
    )
    page.wait_for_function("() => document.querySelector('canvas.overlay').dataset.frame !== ''")

    # The known frame, its ten best objects, listed (docs/images/web-job.png shows the
    # same on the real video: tests/web/test_screenshots.py).
    seek(page, frame["timestamp"], frame["frame"])
    best = sorted((o["score"] for o in frame["objects"]), reverse=True)[:10][-1]
    page.locator("#min-score").fill(f"{int(best * 100) / 100:.2f}")
    page.click(".objects-box summary")
    watched.assert_clean()


def test_without_request_video_frame_callback_the_overlay_follows_timeupdate(
    service: Service, done_job: dict[str, Any], browser_page: Any
):
    job, frames = done_job["job"], done_job["frames"]
    watched = browser_page(service.url)
    page = watched.page
    # A browser without requestVideoFrameCallback (Firefox before 132, say).
    page.add_init_script("delete HTMLVideoElement.prototype.requestVideoFrameCallback;")
    sign_in(watched, done_job["username"])
    page.goto(f"/#/jobs/{job['id']}")
    page.wait_for_function("() => document.querySelector('video.video')?.readyState >= 2")
    assert (
        page.evaluate("() => 'requestVideoFrameCallback' in document.querySelector('video.video')") is False
    )
    show_original_with_boxes(page)
    frame, target = pick_object(frames)
    seek(page, frame["timestamp"], frame["frame"])
    x1, y1, x2, y2 = to_screen(target["box"], geometry(page))
    assert alpha_at(page, x1, (y1 + y2) / 2) > 0
    assert alpha_at(page, (x1 + x2) / 2, y2) > 0
    seek(page, 0, expected_frame(frames, 0))
    page.evaluate("() => document.querySelector('video.video').play()")
    samples = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not page.eval_on_selector("video.video", "v => v.ended"):
        samples.append(page.eval_on_selector("canvas.overlay", "c => [c.dataset.frame, c.dataset.time]"))
        time.sleep(0.05)
    drawn = [(int(f), float(t)) for f, t in samples if f]
    assert len({f for f, _ in drawn}) >= 5, samples
    for drawn_frame, media_time in drawn:
        assert drawn_frame == expected_frame(frames, media_time)
    watched.assert_clean()


def red_box(png: bytes) -> tuple[int, int, int, int]:
    """Where the synthetic video's red square is in a screenshot: left, top, right, bottom."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    red = np.argwhere((image[:, :, 2] > 180) & (image[:, :, 1] < 80) & (image[:, :, 0] < 80))
    assert len(red), "no red square on screen"
    return int(red[:, 1].min()), int(red[:, 0].min()), int(red[:, 1].max()), int(red[:, 0].max())


def serve_with_ranges(route: Any, body: bytes) -> None:
    """Answer a video request as a server with Range support does (players seek only then)."""
    wanted = route.request.headers.get("range", "")
    headers = {"Accept-Ranges": "bytes", "Content-Type": "video/mp4"}
    if not wanted.startswith("bytes="):
        route.fulfill(status=200, headers=headers, body=body)
        return
    first, _, last = wanted.removeprefix("bytes=").partition("-")
    start, end = int(first or 0), min(int(last) if last else len(body) - 1, len(body) - 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
    route.fulfill(status=206, headers=headers, body=body[start : end + 1])


def play_the_api(page: Any, job_id: str, rotation: int, video_route: Any) -> None:
    """Answer a succeeded 10-frame job's requests in the page (page.route): the job, its
    detections (frame i: the red square of synthetic frame i) and its media token, whose
    video URL ``video_route`` answers."""
    side = max(8, min(WIDTH, HEIGHT) // 6)  # synthetic.frame_image's square

    def square(i: int) -> list[int]:
        x = (i * 7) % (WIDTH - side)
        return [x, HEIGHT // 4, x + side, HEIGHT // 4 + side]

    frames = [
        {
            "frame": i,
            "timestamp": i / FPS,
            "objects": [{"label": "red", "class_id": 1, "score": 0.9, "box": square(i)}],
        }
        for i in range(10)
    ]
    job = {
        "id": job_id,
        "status": "succeeded",
        "filename": f"{job_id}.mp4",
        "score_threshold": 0.5,
        "model": "test",
        "progress": {
            "frames_done": 10,
            "frames_total": 10,
            "percent": 100.0,
            "stage": "finished",
            "frames_tracked": None,
        },
        "options": {
            "sample_fps": None,
            "frame_stride": None,
            "start": None,
            "end": None,
            "classes": None,
            "track": False,
            "model": "default",
        },
        "video": {
            "codec": "h264",
            "width": WIDTH,
            "height": HEIGHT,
            "fps": FPS,
            "frame_count": 10,
            "duration": 1.0,
            "rotation": rotation,
        },
        "objects_total": 10,
        "error": None,
        "created_at": "2026-12-02T00:00:00+00:00",
        "started_at": None,
        "finished_at": None,
        "render": None,
    }
    detections = {
        "job_id": job_id,
        "frames_total": 10,
        "start": 0,
        "limit": 1000,
        "next_start": None,
        "frames": frames,
    }
    media = {
        "token": "t",
        "expires_in": 60,
        "video_url": f"/media/{job_id}.mp4",
        "annotated_url": "/media/none.mp4",
    }
    page.route(f"**/api/jobs/{job_id}", lambda route: route.fulfill(json=job))
    page.route(f"**/api/jobs/{job_id}/detections?*", lambda route: route.fulfill(json=detections))
    page.route(f"**/api/jobs/{job_id}/media-token", lambda route: route.fulfill(json=media))
    page.route(f"**/media/{job_id}.mp4", video_route)  # fmt: skip


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_boxes_turn_with_a_rotated_video(service: Service, browser_page: Any, tmp_path: Path, rotation: int):
    """A phone video: the browser shows it turned, and the boxes (in the stored frame) turn with it.

    The API here is played by the test (page.route) around a real rotated video, so the
    box is known exactly: the red square of frame 5, which the browser's own picture shows.
    """
    video = make_video(
        tmp_path / f"r{rotation}.mp4", frames=10, width=WIDTH, height=HEIGHT, fps=FPS, rotation=rotation
    )
    job_id = f"rotated{rotation}"
    watched = browser_page(service.url)
    page = watched.page
    register(page, f"rita{rotation}", PASSWORD)
    play_the_api(page, job_id, rotation, lambda route: serve_with_ranges(route, video.read_bytes()))

    page.goto(f"/#/jobs/{job_id}")
    page.wait_for_function("() => document.querySelector('video.video')?.readyState >= 2")
    seek(page, 0.5, 5)
    g = geometry(page)
    turned = rotation in (90, 270)
    assert (g["vw"], g["vh"]) == ((HEIGHT, WIDTH) if turned else (WIDTH, HEIGHT))  # the browser turns it
    page.uncheck("#show-boxes")
    left, top, right, bottom = red_box(page.locator("video.video").screenshot())
    page.check("#show-boxes")
    # From the middle of the red square outwards, the first drawn pixel is the box's edge.
    edges = page.evaluate(
        """([cx, cy]) => { const c = document.querySelector('canvas.overlay'); const r = window.devicePixelRatio || 1;
             const ctx = c.getContext('2d');
             const painted = (x, y) => ctx.getImageData(Math.round(x * r), Math.round(y * r), 1, 1).data[3] > 0;
             const walk = (dx, dy) => { for (let x = cx, y = cy; x >= 0 && y >= 0 && x < c.clientWidth && y < c.clientHeight; x += dx, y += dy)
                                          if (painted(x, y)) return dx ? x : y; return null; };
             return [walk(-1, 0), walk(0, -1), walk(1, 0), walk(0, 1)]; }""",
        [(left + right) / 2, (top + bottom) / 2],
    )
    scale = min(g["cw"] / g["vw"], g["ch"] / g["vh"])  # screen pixels per video pixel
    for drawn, seen in zip(edges, (left, top, right, bottom), strict=True):
        assert drawn is not None and abs(drawn - seen) <= scale + 2, (
            rotation,
            edges,
            (left, top, right, bottom),
        )
    watched.assert_clean()


def test_a_video_the_api_refuses_says_why_and_the_detections_stay(service: Service, browser_page: Any):
    watched = browser_page(service.url)
    page = watched.page
    register(page, "vera", PASSWORD)
    gone = {"error": "gone", "message": "the video was deleted 30 days after the job ended"}
    play_the_api(page, "deleted", 0, lambda route: route.fulfill(status=410, json=gone))
    page.goto("/#/jobs/deleted")
    problem = page.locator(".player .error")
    problem.wait_for()
    assert problem.text_content() == f"The video cannot be played: {gone['message']}"
    page.wait_for_selector("canvas.timeline[data-complete='1']", state="attached")
    assert page.locator(".class-filter label.check").text_content() == "red"
    assert page.locator(".exports button").count() == 4  # no mot: an untracked job
    watched.expect_console_error("status of 410", times=None)
    watched.assert_clean()


def test_every_export_and_the_annotated_video_download(
    service: Service, done_job: dict[str, Any], browser_page: Any, tmp_path: Path
):
    job = done_job["job"]
    watched = browser_page(service.url)
    page = watched.page
    sign_in(watched, done_job["username"])
    page.goto(f"/#/jobs/{job['id']}")
    page.wait_for_selector(".exports button")
    formats = page.eval_on_selector_all(".exports button", "bs => bs.map(b => b.dataset.format)")
    assert formats == ["coco", "mot", "cvat", "csv", "jsonl"]  # mot: a tracked job
    client = service.client()
    for fmt in formats:
        with page.expect_download() as started:
            page.click(f".exports button[data-format={fmt}]")
        download = started.value
        expected = client.get(f"/api/jobs/{job['id']}/export?format={fmt}", headers=done_job["headers"])
        assert expected.status_code == 200
        name = expected.headers["Content-Disposition"].split('filename="')[1].rstrip('"')
        assert download.suggested_filename == name
        saved = tmp_path / name
        download.save_as(saved)
        assert saved.read_bytes() == expected.get_data()
    assert page.locator(".downloads a").count() == len(formats)

    # The annotated video: started here, its progress shown, then a download and a source.
    page.click(".render button:has-text('Make annotated video')")
    link = page.locator(".render a.download")
    link.wait_for(state="visible", timeout=180_000)
    with page.expect_download() as started:
        link.click()
    annotated = started.value
    path = tmp_path / "annotated.mp4"
    annotated.save_as(path)
    assert annotated.suggested_filename.endswith(".mp4") and path.stat().st_size > 1000
    page.select_option("#video-source", "annotated")
    page.wait_for_function(
        "() => { const v = document.querySelector('video.video');"
        " return v.src.includes('/video/annotated?media_token=') && v.readyState >= 1; }"
    )
    assert not page.locator("#show-boxes").is_checked()  # the boxes are drawn in already
    watched.assert_clean()


def test_a_reload_keeps_the_session_and_sign_out_revokes_it(service: Service, browser_page: Any):
    watched = browser_page(service.url)
    page = watched.page
    with page.expect_response(lambda r: r.url.endswith("/api/auth/session")) as signed_in:
        register(page, "carol", PASSWORD)
    access = signed_in.value.json()["access_token"]
    old_cookies = {c["name"]: c["value"] for c in page.context.cookies()}

    with page.expect_response(lambda r: r.url.endswith("/api/auth/session/refresh")) as refreshed:
        page.reload()
    assert refreshed.value.status == 200
    access = refreshed.value.json()["access_token"]  # the page's token now
    page.wait_for_selector("#upload-form")
    assert page.locator(".account .user").text_content() == "carol"

    def slow_logout(route: Any) -> None:
        # Held back, a logout sent beside the session's end would reach the server after
        # it, once the whole login is revoked (401): the page sends them one after the other.
        time.sleep(0.5)
        route.continue_()

    page.route("**/api/auth/logout", slow_logout)
    ending = page.expect_response(
        lambda r: r.url.endswith("/api/auth/session") and r.request.method == "DELETE"
    )
    with ending as ended, page.expect_response(lambda r: r.url.endswith("/api/auth/logout")) as logged_out:
        page.click("#sign-out")
    assert (logged_out.value.status, ended.value.status) == (200, 200)
    page.wait_for_selector("form.auth")
    page.unroute("**/api/auth/logout")
    assert {c["name"] for c in page.context.cookies()} == set()
    client = service.client()
    assert client.get("/api/jobs", headers={"Authorization": f"Bearer {access}"}).status_code == 401
    client.set_cookie(REFRESH_COOKIE, old_cookies[REFRESH_COOKIE], path="/api/auth/session")
    again = client.post("/api/auth/session/refresh", headers={"X-CSRF-TOKEN": old_cookies[CSRF_COOKIE]})
    assert again.status_code == 401
    # A reload now shows the sign-in form: there is no session to restore.
    page.reload()
    page.wait_for_selector("form.auth")
    watched.assert_clean()


# --- Hostile data, small screens, the keyboard ----------------------------------------------


def test_a_hostile_filename_and_hostile_labels_show_as_text(
    service: Service, done_job: dict[str, Any], browser_page: Any
):
    watched = browser_page(service.url)
    page = watched.page
    register(page, "mallory", PASSWORD)
    # Dropped on the drop zone (drag and drop), not chosen with the file input.
    page.evaluate(
        """([name, b64]) => {
             const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
             const data = new DataTransfer();
             data.items.add(new File([bytes], name, { type: "video/mp4" }));
             const zone = document.querySelector(".dropzone");
             for (const type of ["dragenter", "dragover", "drop"]) {
               zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
             } }""",
        [HOSTILE, base64.b64encode(service.video.read_bytes()).decode()],
    )
    assert page.locator(".chosen").text_content().startswith(HOSTILE)
    assert page.input_value("#upload-video") == ""  # the file input was not used
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as made:
        page.click("#upload-form button[type=submit]")
    job_id = made.value.json()["id"]
    assert made.value.json()["filename"] == HOSTILE
    link = row(page, job_id).locator("a.filename")
    link.wait_for()
    assert link.text_content() == HOSTILE
    link.click()
    page.wait_for_selector("h1.job-title:has-text('onerror')")
    assert page.locator("h1.job-title").text_content() == HOSTILE
    assert page.title().startswith(HOSTILE)

    # Labels from the API are text too: the class filter, the objects list, the tooltip.
    hostile_label = '<img src=x onerror=alert("label")>'
    job = done_job["job"]

    def hostile_page(route: Any) -> None:
        frames = [
            {"frame": i, "timestamp": i / FPS, "objects": [
                {"label": hostile_label, "class_id": 1, "score": 0.9, "box": [10, 20, 90, 80]}]}
            for i in range(FRAMES)
        ]  # fmt: skip
        route.fulfill(json={"job_id": job["id"], "frames_total": FRAMES, "start": 0, "limit": 1000,
                            "next_start": None, "frames": frames})  # fmt: skip

    page.route("**/detections?*", hostile_page)
    with page.expect_response("**/api/auth/logout"):
        page.click("#sign-out")
    sign_in(watched, done_job["username"])
    page.goto(f"/#/jobs/{job['id']}")
    page.wait_for_function("() => document.querySelector('canvas.overlay')?.dataset.frame === '0'")
    assert page.locator(".class-filter label.check").first.text_content() == hostile_label
    page.click(".objects-box summary")
    assert page.locator(".objects li").first.text_content().startswith(f"{hostile_label} 0.90")
    page.locator("video.video").scroll_into_view_if_needed()  # the pointer goes over it next
    g = geometry(page)
    x1, y1, x2, y2 = to_screen([10, 20, 90, 80], g)
    page.mouse.move(g["left"] + (x1 + x2) / 2, g["top"] + (y1 + y2) / 2)
    assert page.locator(".tip").text_content() == f"{hostile_label} 0.90"
    page.wait_for_timeout(500)  # time for an injected image to fail and fire onerror
    assert page.locator("main img").count() == 0
    watched.assert_clean()  # no dialog opened


def test_the_pages_fit_a_phone_and_the_controls_take_the_keyboard(
    service: Service, done_job: dict[str, Any], browser_page: Any
):
    watched = browser_page(service.url)
    page = watched.page
    sign_in(watched, done_job["username"])

    # The list's error state: the API's message and a way to try again.
    def unavailable(route: Any) -> None:
        route.fulfill(status=503, json={"error": "unavailable", "message": "the database is down"})

    page.route("**/api/jobs?*", unavailable)
    page.goto("/#/")
    page.reload()
    page.wait_for_selector(".list-state:has-text('Could not load your jobs: the database is down')")
    assert page.locator("table.jobs").is_hidden()
    page.unroute("**/api/jobs?*", unavailable)
    page.click(".list-state button:has-text('Try again')")
    watched.expect_console_error("status of 503", times=None)

    # Every upload control is reached with Tab, in order, with a visible focus ring.
    page.wait_for_selector(f'tr[data-job-id="{done_job["job"]["id"]}"]')
    page.focus("#main")
    reached = []
    for _ in range(30):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id || document.activeElement.tagName"))
        if reached[-1] == "upload-score_threshold":
            ring = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
            assert ring != "none"
    order = ["upload-video", "upload-score_threshold", "upload-sample_fps", "upload-frame_stride",
             "upload-start", "upload-end", "upload-classes", "upload-track"]  # fmt: skip
    positions = [reached.index(name) for name in order]
    assert positions == sorted(positions), reached
    page.focus("#upload-video")
    assert page.eval_on_selector(".dropzone", "d => getComputedStyle(d).outlineStyle") != "none"

    # A phone-sized window: nothing is wider than the screen, on the list and the job page.
    page.set_viewport_size(PHONE)
    wide = "() => document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(wide)
    assert page.locator(".jobs thead").bounding_box()["width"] <= 1  # the table is cards now
    page.goto(f"/#/jobs/{done_job['job']['id']}")
    page.wait_for_function("() => document.querySelector('video.video')?.readyState >= 2")
    assert page.evaluate(wide)
    assert page.locator("video.video").bounding_box()["width"] <= PHONE["width"]
    watched.assert_clean()
