"""STORAGE_QUOTA_MB through the API: uploads and downloads past a user's quota are
refused and keep nothing, renders count, deleting frees, and /api/auth/me shows it.
Room is reserved in one step with the check, so concurrent uploads cannot pass the
quota together; what is not kept gives its room back; temporary files of work that
died are swept."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from detector.db import db
from detector.models import Job, JobStatus, StorageReservation, User, utcnow
from detector.pipeline import quota
from detector.pipeline.rendering import render_job
from detector.pipeline.tasks import download_video, watchdog
from tests.api.conftest import job_row, render_row, update_job
from tests.api.test_jobs import job_count, stored_videos, upload
from tests.api.test_retention import _finished, _rendered, _sweep
from tests.conftest import Auth, reconfigure
from tests.integrations.servers import file_route, serve, unsized_route

MB = 1024 * 1024


def _refusal(quota: str, used: str, video: str | None = None) -> str:
    detail = f", this video is {video}" if video is not None else ""
    return f"storage quota {quota} exceeded: {used} used{detail}; deleting jobs frees their videos"


def _storage(client, headers) -> dict:
    me = client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200, me.json
    return me.json["storage"]


def _uses(app, job_id: str, size: int) -> None:
    """Make the job's stored video count ``size`` bytes (a large video, without sending
    one): its recorded size changes, and its owner's count is rebuilt from the jobs."""
    update_job(app, job_id, video_bytes=size)
    with app.app_context():
        quota.reconcile(db.session.get(Job, job_id).owner_id)


def _account(app, username: str = "alice") -> tuple[int, int, int, int]:
    """The user's used and reserved bytes, their reservation rows, and the sum over
    their jobs that the used bytes must equal."""
    with app.app_context():
        user = db.session.scalars(select(User).where(User.username == username)).one()
        rows = db.session.scalar(
            select(func.count()).select_from(StorageReservation).where(StorageReservation.owner_id == user.id)
        )
        return user.storage_used_bytes, user.storage_reserved_bytes, rows, quota.stored_bytes(user.id)


def _settled(app, username: str = "alice") -> int:
    """Check that nothing is held in reserve and the count is the jobs' sum; the count."""
    used, reserved, rows, total = _account(app, username)
    assert (reserved, rows) == (0, 0)
    assert used == total
    return used


def _quota_of(size: int) -> float:
    """STORAGE_QUOTA_MB that gives exactly ``size`` bytes."""
    return (size + 0.5) / MB


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
    kept = render_row(app, job_id)
    render = app.extensions["video_storage"].path(kept.key).stat().st_size
    assert kept.bytes == render > 0
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
    assert _settled(app) == int(4.8 * MB) + len(video)


def test_a_download_past_the_quota_fails_and_gives_its_room_back(app, client, auth: Auth, small_video):
    """Without Content-Length the bytes are reserved as they arrive; the first that do
    not fit fail the job with the quota message; nothing stays held."""
    reconfigure(app, ALLOW_PRIVATE_URLS=True, STORAGE_QUOTA_MB=5)
    headers = auth.headers()
    first = upload(client, headers, small_video).json["id"]
    _uses(app, first, int(4.8 * MB))
    routes = {"/unsized.mp4": unsized_route(int(0.4 * MB)), "/sized.mp4": file_route(b"\0" * int(0.4 * MB))}
    kept = stored_videos(app)
    with serve(routes) as (base, _recorder):
        for path in ("/unsized.mp4", "/sized.mp4"):
            job_id = _submit_url(client, headers, base + path).json["id"]
            with app.app_context():
                assert "failed" in download_video.run(job_id)
            failed = client.get(f"/api/jobs/{job_id}", headers=headers).json
            assert failed["status"] == "failed"
            if path == "/sized.mp4":  # refused on the announced size, before the body
                assert failed["error"] == _refusal("5 MB", "4.8 MB", "0.4 MB")
            else:
                assert failed["error"].startswith(
                    "storage quota 5 MB exceeded: 4.8 MB used, this video is at least "
                )
            assert stored_videos(app) == kept
            assert _settled(app) == int(4.8 * MB)


def test_concurrent_uploads_cannot_pass_the_quota_together(app, auth: Auth, small_video, monkeypatch):
    """Two uploads over HTTP at once, each fitting alone but not both: exactly one is
    kept, the other is 413. Each request is held just before its probe until the
    other has reached its own probe or been answered, so both have passed the
    quota before either commits whenever the quota is only checked."""
    import detector.services.jobs as jobs_service

    content = small_video.read_bytes()
    reconfigure(app, STORAGE_QUOTA_MB=_quota_of(len(content) * 3 // 2))
    headers = auth.headers()
    arrived = threading.Condition()
    count = [0]

    def arrive() -> None:
        with arrived:
            count[0] += 1
            arrived.notify_all()

    real_probe = jobs_service.probe

    def probe_when_both_arrived(*args, **kwargs):
        arrive()
        with arrived:
            arrived.wait_for(lambda: count[0] >= 2, timeout=60)
        return real_probe(*args, **kwargs)

    monkeypatch.setattr(jobs_service, "probe", probe_when_both_arrived)
    answers: list = [None, None]
    with _served(app) as api:

        def submit(i: int) -> None:
            with requests.Session() as http:
                http.trust_env = False  # no proxy for loopback
                answers[i] = http.post(
                    f"{api}/jobs", headers=headers, files={"video": (f"clip{i}.mp4", content)}, timeout=120
                )
            if answers[i].status_code != 202:
                arrive()  # refused before its probe

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert sorted(a.status_code for a in answers) == [202, 413], [a.text for a in answers]
    [refused] = [a.json() for a in answers if a.status_code == 413]
    size = f"{len(content) / MB:.1f} MB"
    assert refused == {
        "error": "quota_exceeded",
        "message": _refusal(f"{round(len(content) * 3 // 2 / MB, 3):g} MB", size, size),
    }
    assert job_count(app) == 1
    assert len(stored_videos(app)) == 1  # the refused upload left nothing, not even in .incoming
    assert _settled(app) == len(content)


def test_an_upload_that_is_not_kept_gives_its_room_back(app, client, auth: Auth, small_video, monkeypatch):
    """Refused after its reservation (not a video, a span past its end) or failed at its
    commit (the loser of an Idempotency-Key race): the room is free again."""
    from detector.services import idempotency

    size = small_video.stat().st_size
    reconfigure(app, STORAGE_QUOTA_MB=_quota_of(size))  # room for exactly one
    headers = auth.headers()
    assert upload(client, headers, data=b"\0" * size).status_code == 415
    assert _settled(app) == 0
    assert upload(client, headers, small_video, start=1000).status_code == 400
    assert _settled(app) == 0
    # The race loser's commit fails on the key's unique constraint after its reservation.
    keyed = {**headers, "Idempotency-Key": "race"}
    reconfigure(app, STORAGE_QUOTA_MB=_quota_of(2 * size))
    winner = upload(client, keyed, small_video)
    assert winner.status_code == 202
    real = idempotency._live_record
    calls = {"n": 0}

    def miss_first(*args, **kwargs):
        calls["n"] += 1
        return None if calls["n"] == 1 else real(*args, **kwargs)

    monkeypatch.setattr(idempotency, "_live_record", miss_first)
    loser = upload(client, keyed, small_video)
    assert calls["n"] == 2 and loser.status_code == 200 and loser.json["id"] == winner.json["id"]
    assert job_count(app) == 1
    assert _settled(app) == size
    # The room of each refused upload was given back: one more fits exactly.
    assert upload(client, headers, small_video).status_code == 202
    assert _settled(app) == 2 * size
    assert upload(client, headers, small_video).status_code == 413


def test_a_render_past_the_quota_fails_and_keeps_nothing(app, client, auth: Auth, small_video):
    """Room for about the source's size is reserved before drawing (refused at once if
    even that does not fit); the real size is checked when the render is kept."""
    headers = auth.headers()
    size = small_video.stat().st_size
    drawn = _finished(app, client, headers, small_video)
    _rendered(app, client, headers, drawn)
    render = render_row(app, drawn).bytes
    assert _settled(app) == size + render
    # Its estimate (the source's size) does not fit: failed before drawing.
    early = _finished(app, client, headers, small_video)
    reconfigure(app, STORAGE_QUOTA_MB=_quota_of(2 * size + render + size // 2))
    assert client.post(f"/api/jobs/{early}/render", headers=headers).status_code == 202
    kept = sorted(stored_videos(app))
    with app.app_context():
        assert "failed" in render_job.run(early)
    shown = client.get(f"/api/jobs/{early}", headers=headers).json["render"]
    used = f"{(2 * size + render) / MB:.1f} MB"
    assert shown["status"] == "failed"
    assert shown["error"] == _refusal(
        f"{round((2 * size + render + size // 2) / MB, 3):g} MB", used, f"{size / MB:.1f} MB"
    )
    assert sorted(stored_videos(app)) == kept and _settled(app) == 2 * size + render
    # The estimate fits (the source counts 1 byte) but the annotated video does not:
    # failed when it is kept, its file deleted.
    reconfigure(app, STORAGE_QUOTA_MB=0)
    late = _finished(app, client, headers, small_video)
    _uses(app, late, 1)
    used_bytes = 2 * size + render + 1
    reconfigure(app, STORAGE_QUOTA_MB=_quota_of(used_bytes + render // 2))
    assert client.post(f"/api/jobs/{late}/render", headers=headers).status_code == 202
    kept = sorted(stored_videos(app))
    with app.app_context():
        assert "failed" in render_job.run(late)
    shown = client.get(f"/api/jobs/{late}", headers=headers).json["render"]
    assert shown["status"] == "failed"
    assert shown["error"].startswith(
        f"storage quota {round((used_bytes + render // 2) / MB, 3):g} MB exceeded: "
        f"{used_bytes / MB:.1f} MB used, this video is "
    )
    assert sorted(stored_videos(app)) == kept and _settled(app) == used_bytes
    # With room, it is drawn and counted.
    reconfigure(app, STORAGE_QUOTA_MB=0)
    assert client.post(f"/api/jobs/{late}/render", headers=headers).status_code == 202
    with app.app_context():
        assert render_job.run(late)["frames"] > 0
    assert _settled(app) == used_bytes + render_row(app, late).bytes


def test_reservations_of_dead_work_are_released_by_the_sweep(app, client, auth: Auth):
    """An upload whose process died after reserving, and a download that stopped: the
    watchdog's sweep releases what they held once it is old, and never what a job
    still downloading holds."""
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    headers = auth.headers()
    downloading = _submit_url(client, headers, "http://127.0.0.1:9/never.mp4").json["id"]
    with app.app_context():
        owner = db.session.get(Job, downloading).owner_id
        quota.reserve(owner, 1000)  # an upload that never came back
        quota.reserve(owner, 500, job_id=downloading)
        assert quota.sweep_reservations() == 0  # not expired yet
        later = utcnow() + quota.RESERVATION_LIFETIME + timedelta(minutes=1)
        assert quota.sweep_reservations(later) == 1  # the upload's; the download is alive
        assert _account(app)[:3] == (0, 500, 1)
        update_job(app, downloading, status=JobStatus.FAILED)
        assert quota.sweep_reservations(later) == 1
        assert quota.sweep_reservations(later) == 0
    assert _settled(app) == 0
    # Deleting a job releases what its download holds at once.
    deleted = _submit_url(client, headers, "http://127.0.0.1:9/deleted.mp4").json["id"]
    with app.app_context():
        quota.reserve(owner, 700, job_id=deleted)
    assert _account(app)[1] == 700
    assert client.delete(f"/api/jobs/{deleted}", headers=headers).status_code == 204
    assert _settled(app) == 0


def test_temporary_files_of_dead_uploads_downloads_and_renders_are_swept(app):
    """What an upload, a download (upload-*) and a render (.upload-*.part beside its
    output) leave in the incoming area when their process dies is removed by the
    watchdog once nobody has written to it for an hour; files in use are kept."""
    incoming = Path(app.config["VIDEO_STORAGE"]) / ".incoming"
    names = ["upload-dead", ".upload-dead.1a2b3c.part", "upload-live", ".upload-live.4d5e6f.part"]
    for name in names:
        (incoming / name).write_bytes(b"part of a video")
    hours_ago = time.time() - 2 * 3600
    for name in names[:2]:
        os.utime(incoming / name, (hours_ago, hours_ago))
    with app.app_context():
        assert watchdog()["uploads_swept"] == 2
    assert sorted(p.name for p in incoming.iterdir()) == sorted(names[2:])


@contextmanager
def _served(app) -> Iterator[str]:
    """The app over HTTP on a loopback port, in threads; yields the API's base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api"
    finally:
        server.shutdown()
        thread.join(10)
