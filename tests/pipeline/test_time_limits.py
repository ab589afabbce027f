"""Time limits that fit the work (docs/operations.md, "Time limits"): no global Celery
limit; fixed ones per task; a render's and a tracking step's grow with their frames,
travel with their message and end them with a message naming the limit; a download
has none and fails only when nothing arrives; the watchdog judges renders and
downloads by the same budgets. The last test runs real workers (slow)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from detector.app import create_app
from detector.config import LONGEST_TASK_SECONDS, ConfigError, Settings, load_config
from detector.db.migrate import upgrade
from detector.models import JobStatus, RenderStatus, utcnow
from detector.pipeline import rendering
from detector.pipeline.celery_app import celery_config
from detector.pipeline.download import MAX_RETRY_WAIT, silent_for, watch_downloads
from detector.pipeline.limits import (
    GRACE_SECONDS,
    PLANNING_SECONDS,
    Deadline,
    LimitExceeded,
    render_limit,
    task_limits,
    tracking_limit,
)
from detector.pipeline.names import (
    DETECT_FRAMES,
    DOWNLOAD_VIDEO,
    MERGE_CHUNKS,
    PROCESS_VIDEO,
    RENDER_VIDEO,
    TRACK_OBJECTS,
    WATCHDOG,
)
from detector.pipeline.planning import PLANNING_LEASE
from detector.pipeline.rendering import alive_for, render_job, watch_renders
from detector.pipeline.tasks import download_video, track_objects
from detector.pipeline.tracking import send_track_objects
from detector.video.synthetic import make_video
from tests.api.conftest import download_row, job_row, render_row, update_download, update_job, update_render
from tests.api.test_jobs import stored_videos, upload
from tests.api.test_results import store_frames, succeeded_job
from tests.conftest import Auth, base_config, reconfigure
from tests.integrations.servers import serve, stalling_route, trickle_route
from tests.pipeline.conftest import Workers, wait_for_job


def _messages(app, task: str) -> list[dict[str, Any]]:
    """The messages of ``task`` waiting in the embedded broker's queue folder."""
    folder = Path(app.config["DATA_DIR"]) / "broker" / "queue"
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*.msg"))]
    return [m for m in found if m["headers"]["task"] == task]


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s, 160x120 at 10 fps: 120 frames, so a render reports progress twice on the way."""
    return make_video(
        tmp_path_factory.mktemp("long") / "long.mp4", frames=120, width=160, height=120, fps=10, gop=8
    )


# -- the Celery configuration -------------------------------------------------------------------------


def test_celery_has_no_global_time_limit_only_per_task_ones(app, tmp_path):
    conf = celery_config(Settings.from_config(load_config(base_config(tmp_path, CHUNK_TIME_LIMIT=900))))
    assert "task_soft_time_limit" not in conf and "task_time_limit" not in conf
    assert conf["task_annotations"][DETECT_FRAMES] == {"soft_time_limit": 900, "time_limit": 960}
    celery = app.extensions["celery"]
    assert celery.conf.task_soft_time_limit is None and celery.conf.task_time_limit is None
    chunk = app.extensions["settings"].chunk_time_limit
    assert (celery.tasks[DETECT_FRAMES].soft_time_limit, celery.tasks[DETECT_FRAMES].time_limit) == (
        chunk,
        chunk + 60,
    )
    for name in (PROCESS_VIDEO, MERGE_CHUNKS, WATCHDOG):
        task = celery.tasks[name]
        assert 0 < task.soft_time_limit < task.time_limit <= LONGEST_TASK_SECONDS, name
    # Per message (renders, tracking) or none at all (a download, judged by its progress).
    for name in (RENDER_VIDEO, TRACK_OBJECTS, DOWNLOAD_VIDEO):
        assert celery.tasks[name].soft_time_limit is None and celery.tasks[name].time_limit is None, name
    assert set(task_limits(app.extensions["settings"])).isdisjoint(
        {RENDER_VIDEO, TRACK_OBJECTS, DOWNLOAD_VIDEO}
    )


def test_a_planner_is_killed_before_its_lease_lets_another_take_over():
    assert PLANNING_LEASE.total_seconds() >= PLANNING_SECONDS + GRACE_SECONDS


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("RENDER_SECONDS_PER_FRAME", 0, "RENDER_SECONDS_PER_FRAME must be a number of seconds, more than 0"),
        ("RENDER_SECONDS_PER_FRAME", -0.5, "more than 0, got -0.5"),
        ("RENDER_SECONDS_PER_FRAME", math.nan, "RENDER_SECONDS_PER_FRAME must be a number of seconds"),
        ("RENDER_BASE_SECONDS", -1, "RENDER_BASE_SECONDS must be a number of seconds, 0 or more, got -1"),
        ("TRACK_SECONDS_PER_FRAME", math.inf, "TRACK_SECONDS_PER_FRAME must be a number of seconds"),
        ("TRACK_BASE_SECONDS", -3, "TRACK_BASE_SECONDS must be a number of seconds, 0 or more"),
        ("DOWNLOAD_TIMEOUT_SECONDS", 0, "DOWNLOAD_TIMEOUT_SECONDS must be a number of seconds, more than 0"),
        ("CHUNK_TIME_LIMIT", 0, "CHUNK_TIME_LIMIT must be between 1 and"),
        ("CHUNK_TIME_LIMIT", LONGEST_TASK_SECONDS, "CHUNK_TIME_LIMIT must be between 1 and"),
    ],
)
def test_bad_time_limit_settings_are_clear_errors(tmp_path, name, value, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        Settings.from_config(load_config(base_config(tmp_path, **{name: value})))


def test_a_time_limit_setting_that_is_no_number_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("RENDER_SECONDS_PER_FRAME", "fast")
    with pytest.raises(ConfigError, match="RENDER_SECONDS_PER_FRAME must be a number, got 'fast'"):
        load_config(base_config(tmp_path))


# -- renders ---------------------------------------------------------------------------------------------


def test_a_render_limit_grows_with_its_frames_and_their_size(tmp_path):
    settings = Settings.from_config(load_config(base_config(tmp_path)))
    hour = render_limit(settings, 108_000, 1920, 1080)  # an hour of 1080p at 30 fps
    assert hour.seconds == pytest.approx(22_200)
    assert render_limit(settings, 216_000, 1920, 1080).seconds - 600 == pytest.approx(
        2 * (hour.seconds - 600)
    )
    assert (
        render_limit(settings, 108_000, 640, 360).seconds == hour.seconds
    )  # a small frame costs a whole one
    uhd = render_limit(settings, 10_000, 3840, 2160)
    assert uhd.seconds - 600 == pytest.approx(4 * (render_limit(settings, 10_000, 1920, 1080).seconds - 600))
    assert "each counted 4 times for its 3840x2160 pixels" in uhd.formula
    assert render_limit(settings, 0, None, None).seconds == 600
    # The message says which limit, how long, and which setting raises it.
    assert hour.message() == (
        "the render ran past its 22200 s time limit (RENDER_BASE_SECONDS 600 s + "
        "RENDER_SECONDS_PER_FRAME 0.2 s for each of 108000 frames); raise RENDER_SECONDS_PER_FRAME"
    )
    # Sent with it: the worker interrupts it a grace period later, and kills it one more later.
    assert hour.options() == {"soft_time_limit": 22260, "time_limit": 22320}
    # No limit passes the longest a task may run (RabbitMQ's consumer_timeout is above it).
    days = render_limit(settings, 10_000_000, 1920, 1080)
    assert days.seconds == LONGEST_TASK_SECONDS and days.capped
    assert f"ran past {LONGEST_TASK_SECONDS} s, the longest any task may run" in days.message()


def test_a_tracking_limit_grows_with_its_frames(tmp_path):
    settings = Settings.from_config(load_config(base_config(tmp_path)))
    assert tracking_limit(settings, 108_000).seconds == pytest.approx(300 + 0.1 * 108_000)
    assert tracking_limit(settings, 1000).seconds < tracking_limit(settings, 2000).seconds
    assert tracking_limit(settings, 1000).message() == (
        "tracking ran past its 400 s time limit (TRACK_BASE_SECONDS 300 s + "
        "TRACK_SECONDS_PER_FRAME 0.1 s for each of 1000 frames); raise TRACK_SECONDS_PER_FRAME"
    )


def test_a_deadline_passes_after_its_limit(tmp_path):
    settings = Settings.from_config(
        load_config(base_config(tmp_path, RENDER_BASE_SECONDS=0.05, RENDER_SECONDS_PER_FRAME=1e-9))
    )
    deadline = Deadline(render_limit(settings, 10, 160, 120))
    deadline.check()
    time.sleep(0.06)
    with pytest.raises(LimitExceeded, match=re.escape("the render ran past its 0.05 s time limit")):
        deadline.check()


def test_the_render_message_carries_the_jobs_limit(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    [message] = _messages(app, RENDER_VIDEO)
    limit = 600 + 0.2 * 20  # the video's 20 frames
    # Celery's per-message limits, [hard, soft]: what a prefork worker applies, whichever broker.
    assert message["headers"]["timelimit"] == [limit + 2 * GRACE_SECONDS, limit + GRACE_SECONDS]


def test_a_render_past_its_limit_fails_saying_which_limit(app, client, auth: Auth, long_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, long_video)
    reconfigure(app, RENDER_BASE_SECONDS=0, RENDER_SECONDS_PER_FRAME=1e-6)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    kept = stored_videos(app)
    with app.app_context():
        result = render_job.run(job_id)
    expected = (
        "the render ran past its 0.00012 s time limit (RENDER_BASE_SECONDS 0 s + "
        "RENDER_SECONDS_PER_FRAME 1e-06 s for each of 120 frames); raise RENDER_SECONDS_PER_FRAME"
    )
    assert result == {"job_id": job_id, "failed": expected}
    render = client.get(f"/api/jobs/{job_id}", headers=headers).json["render"]
    assert render["status"] == "failed" and render["error"] == expected and render["url"] is None
    assert stored_videos(app) == kept  # nothing half-drawn is kept
    # With a limit that fits, the same render succeeds (asked again after the failure).
    reconfigure(app, RENDER_BASE_SECONDS=600, RENDER_SECONDS_PER_FRAME=0.2)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    with app.app_context():
        assert render_job.run(job_id)["frames"] == 120


def test_a_render_stopped_by_the_workers_soft_limit_fails_the_same_way(
    app, client, auth: Auth, small_video, monkeypatch
):
    """The worker's soft limit (a render stuck inside one call) ends it with the same words."""

    def stuck(*args: Any, **kwargs: Any) -> None:
        raise SoftTimeLimitExceeded()

    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    client.post(f"/api/jobs/{job_id}/render", headers=headers)
    monkeypatch.setattr(rendering, "render_video", stuck)
    with app.app_context():
        rendering.render_job.run(job_id)
    error = client.get(f"/api/jobs/{job_id}", headers=headers).json["render"]["error"]
    assert error.startswith("the render ran past its 604 s time limit (RENDER_BASE_SECONDS 600 s + ")
    assert error.endswith("for each of 20 frames); raise RENDER_SECONDS_PER_FRAME")


def _render_in(
    app, client, headers, video: Path, status: RenderStatus, quiet: timedelta, **values: Any
) -> str:
    job_id = succeeded_job(app, client, headers, video)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    then = utcnow() - quiet
    update_render(app, job_id, status=status, progress_at=then, requested_at=then, **values)
    return job_id


def test_the_watchdog_judges_a_render_by_its_budget(app, client, auth: Auth, small_video):
    """A render is sent again only after it was silent longer than its base time plus 50
    frames at its budget: a slow render of large frames may be silent longer."""
    headers = auth.headers()
    reconfigure(app, RENDER_SECONDS_PER_FRAME=10)
    job_id = _render_in(app, client, headers, small_video, RenderStatus.RENDERING, timedelta(minutes=40))
    with app.app_context():
        settings = app.extensions["settings"]
        stall = timedelta(seconds=60)
        assert alive_for(settings, stall, 160, 120) == timedelta(seconds=600 + 50 * 10)
        assert alive_for(settings, stall, 3840, 2160) == timedelta(seconds=600 + 50 * 10 * 4)
        update_job(app, job_id, width=3840, height=2160)  # 2600 s: 40 minutes is alive
        assert watch_renders(stall) == (0, 0)
        update_job(app, job_id, width=160, height=120)  # 1100 s: 40 minutes is not
        assert watch_renders(stall) == (1, 0)
    assert [m["headers"]["id"] for m in _messages(app, RENDER_VIDEO)][-1] == f"{job_id}-render"


def test_a_queued_render_waits_its_turn_behind_a_render_being_drawn(app, client, auth: Auth, small_video):
    headers = auth.headers()
    stall = timedelta(seconds=60)
    drawing = _render_in(app, client, headers, small_video, RenderStatus.RENDERING, timedelta(seconds=5))
    # Asked for hours ago (longer than the stalls after which a render nobody started
    # fails), behind a long render that keeps moving.
    waiting = _render_in(app, client, headers, small_video, RenderStatus.QUEUED, timedelta(hours=3))
    sent = len(_messages(app, RENDER_VIDEO))
    with app.app_context():
        assert watch_renders(stall) == (0, 0)
    assert render_row(app, waiting).status is RenderStatus.QUEUED
    assert utcnow() - render_row(app, waiting).requested_at < stall  # its wait starts again
    assert len(_messages(app, RENDER_VIDEO)) == sent  # not sent again while it is in line
    # The long render ends; the queued one, still not started two minutes later, is sent
    # again (its message may be lost), not failed.
    update_render(app, drawing, status=RenderStatus.SUCCEEDED)
    two_minutes_ago = utcnow() - timedelta(minutes=2)
    update_render(app, waiting, progress_at=two_minutes_ago, requested_at=two_minutes_ago)
    with app.app_context():
        assert watch_renders(stall) == (1, 0)
    assert render_row(app, waiting).status is RenderStatus.QUEUED
    # Nothing draws and it was asked for longer ago than three stalls: no worker takes renders.
    update_render(app, waiting, progress_at=utcnow() - timedelta(minutes=5))
    update_render(app, waiting, requested_at=utcnow() - timedelta(minutes=5))
    with app.app_context():
        assert watch_renders(stall) == (0, 1)
    error = client.get(f"/api/jobs/{waiting}", headers=headers).json["render"]["error"]
    assert (
        error
        == "no render worker started the render in 180 s (is a worker serving the render queue running?)"
    )


# -- tracking --------------------------------------------------------------------------------------------


def test_tracking_past_its_limit_fails_the_job_saying_so(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video, track="true").json["id"]
    store_frames(app, job_id, list(range(20)), JobStatus.PROCESSING)
    reconfigure(app, TRACK_BASE_SECONDS=0, TRACK_SECONDS_PER_FRAME=1e-9)
    with app.app_context():
        send_track_objects(job_id)
        result = track_objects.run(job_id)
    [message] = _messages(app, TRACK_OBJECTS)
    assert message["headers"]["timelimit"] == [2e-8 + 2 * GRACE_SECONDS, 2e-8 + GRACE_SECONDS]
    expected = (
        "tracking ran past its 2e-08 s time limit (TRACK_BASE_SECONDS 0 s + "
        "TRACK_SECONDS_PER_FRAME 1e-09 s for each of 20 frames); raise TRACK_SECONDS_PER_FRAME"
    )
    assert result == {"job_id": job_id, "failed": expected}
    job = client.get(f"/api/jobs/{job_id}", headers=headers).json
    assert job["status"] == "failed" and job["error"] == expected


# -- downloads -------------------------------------------------------------------------------------------


def _download(app, client, headers, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit ``url``, run its download in process; the task's result and the job after it."""
    response = client.post(
        "/api/jobs", headers=headers, data={"source_url": url}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.json
    job_id = response.json["id"]
    with app.app_context():
        result = download_video.run(job_id)
    return result, client.get(f"/api/jobs/{job_id}", headers=headers).json


def test_a_slow_but_steady_download_succeeds_however_long_it_takes(app, client, auth: Auth, small_video):
    """Over six times the stall period in all (eleven pauses of 0.3 s between twelve
    pieces), but never a stall: no total limit ends it."""
    reconfigure(app, ALLOW_PRIVATE_URLS=True, DOWNLOAD_TIMEOUT_SECONDS=0.5, DOWNLOAD_ATTEMPTS=1)
    video = small_video.read_bytes()
    with serve({"/slow.mp4": trickle_route(video, pieces=12, pause=0.3)}) as (base, _hits):
        started = time.monotonic()
        result, job = _download(app, client, auth.headers(), base + "/slow.mp4")
        took = time.monotonic() - started
    assert result["bytes"] == len(video), result
    assert job["status"] == "queued" and job["bytes_downloaded"] == len(video)
    assert took > 6 * 0.5


def test_a_download_that_stalls_fails_saying_how_long_nothing_came(app, client, auth: Auth, small_video):
    reconfigure(app, ALLOW_PRIVATE_URLS=True, DOWNLOAD_TIMEOUT_SECONDS=0.5, DOWNLOAD_ATTEMPTS=2)
    video = small_video.read_bytes()
    routes = {
        "/stuck.mp4": stalling_route(video, send=1000, pause=3),
        "/mute.mp4": stalling_route(video, pause=3, before_headers=True),
    }
    with serve(routes) as (base, hits):
        _, stuck = _download(app, client, auth.headers(), base + "/stuck.mp4")
        _, mute = _download(app, client, auth.headers(), base + "/mute.mp4")
    assert stuck["status"] == "failed"
    assert stuck["error"] == (
        "the video could not be downloaded: gave up after 2 tries (DOWNLOAD_ATTEMPTS): no bytes arrived for "
        "0.5 s (DOWNLOAD_TIMEOUT_SECONDS; raise it for a server that pauses longer), after 2000 of "
        f"{len(video)} bytes"
    )
    # The second try resumed where the first stalled.
    assert [r.headers.get("Range") for r in hits.of("/stuck.mp4")] == [None, "bytes=1000-"]
    assert mute["status"] == "failed"
    assert mute["error"] == (
        "the video could not be downloaded: gave up after 2 tries (DOWNLOAD_ATTEMPTS): the server answered "
        "nothing for 0.5 s (DOWNLOAD_TIMEOUT_SECONDS; raise it for a server that pauses longer)"
    )


def _downloading(app, client, headers, url: str, quiet: timedelta, deliveries: int) -> str:
    response = client.post(
        "/api/jobs", headers=headers, data={"source_url": url}, content_type="multipart/form-data"
    )
    job_id = response.json["id"]
    update_download(app, job_id, progress_at=utcnow() - quiet, deliveries=deliveries)
    return job_id


def test_the_watchdog_waits_as_long_as_a_live_download_can_be_silent(app, client, auth: Auth):
    """A download writes progress at least every two DOWNLOAD_TIMEOUT_SECONDS and the
    longest wait between tries; the watchdog waits that long (at least its stall)."""
    reconfigure(app, ALLOW_PRIVATE_URLS=True, DOWNLOAD_TIMEOUT_SECONDS=600)
    headers = auth.headers()
    stall = timedelta(seconds=60)
    with app.app_context():
        silent = silent_for(app.extensions["settings"], stall)
    assert silent == timedelta(seconds=2 * 600 + MAX_RETRY_WAIT + 10)
    alive = _downloading(app, client, headers, "http://127.0.0.1:9/a.mp4", timedelta(minutes=15), 1)
    dead = _downloading(app, client, headers, "http://127.0.0.1:9/b.mp4", timedelta(minutes=30), 1)
    before = len(_messages(app, DOWNLOAD_VIDEO))  # the two sent at submission
    with app.app_context():
        assert watch_downloads(stall) == (1, 0)
    sent = [m["headers"]["id"] for m in _messages(app, DOWNLOAD_VIDEO)[before:]]
    assert sent == [f"{dead}-download"]
    assert job_row(app, alive).status is JobStatus.DOWNLOADING
    assert utcnow() - download_row(app, dead).progress_at < stall  # its next look is later
    with app.app_context():
        assert watch_downloads(stall) == (0, 0)  # not sent again at once


# -- through real workers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limits_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Workers]]:
    """A processor and a render worker (no detector), with a one-second CHUNK_TIME_LIMIT,
    the limit every task had before, and a render budget far too small for a video."""
    tmp = tmp_path_factory.mktemp("limits")
    config = base_config(
        tmp,
        ALLOW_PRIVATE_URLS=True,
        CHUNK_TIME_LIMIT=1,
        DOWNLOAD_TIMEOUT_SECONDS=2,
        DOWNLOAD_ATTEMPTS=1,
        RENDER_BASE_SECONDS=0,
        RENDER_SECONDS_PER_FRAME=1e-6,
    )
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    (tmp / "logs").mkdir()
    workers = Workers(config, tmp / "logs")
    try:
        workers.start("processor")
        workers.start("render")
        yield app, app.test_client(), workers
    finally:
        workers.__exit__()
        from detector.db import db

        db.session.remove()


@pytest.mark.slow
def test_real_workers_let_a_slow_download_run_and_stop_a_render_at_its_limit(
    limits_service, small_video, long_video
):
    app, client, workers = limits_service
    headers = Auth(client).headers()
    video = small_video.read_bytes()
    # A download of 4 s, past the 1 s chunk limit every task had: it completes.
    with serve({"/slow.mp4": trickle_route(video, pieces=8, pause=0.5)}) as (base, _hits):
        job = client.post(
            "/api/jobs",
            headers=headers,
            data={"source_url": base + "/slow.mp4"},
            content_type="multipart/form-data",
        ).json
        done = wait_for_job(client, headers, job["id"], timeout=120, until=("queued", "processing", "failed"))
    assert done["status"] != "failed", (done, workers.logs())
    assert done["bytes_downloaded"] == len(video)
    # A render past its (tiny) limit, in the render worker: failed, saying which limit.
    job_id = succeeded_job(app, client, headers, long_video)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    deadline = time.monotonic() + 120
    while (render := client.get(f"/api/jobs/{job_id}", headers=headers).json["render"])["status"] in (
        "queued",
        "rendering",
    ):
        assert time.monotonic() < deadline, (render, workers.logs())
        time.sleep(0.3)
    assert render["status"] == "failed", (render, workers.logs())
    assert render["error"] == (
        "the render ran past its 0.00012 s time limit (RENDER_BASE_SECONDS 0 s + "
        "RENDER_SECONDS_PER_FRAME 1e-06 s for each of 120 frames); raise RENDER_SECONDS_PER_FRAME"
    )
