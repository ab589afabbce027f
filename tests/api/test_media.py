"""A job's annotated render (POST /api/jobs/<id>/render, `render_job` run in-process on a
real small video), its videos with HTTP Range support, media tokens, deletion of the
files, and the watchdog's care of stalled renders."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from itsdangerous.timed import TimestampSigner

from detector.models import JobStatus, RenderStatus, utcnow
from detector.pipeline.rendering import MAX_RENDER_DELIVERIES, render_job, watch_renders
from detector.pipeline.tasks import watchdog
from tests.api.conftest import job_row, render_row, update_job, update_render
from tests.api.test_jobs import queued_messages, stored_videos, upload
from tests.api.test_results import objects_of, store_frames, succeeded_job
from tests.conftest import Auth, reconfigure


def _render_messages(app) -> list[dict]:
    return [m for m in queued_messages(app) if m["headers"]["task"] == "detector.render_video"]


def _rendered(app, client, headers, video: Path, **form) -> str:
    """A succeeded job of ``video`` whose render was asked for and run in-process."""
    job_id = succeeded_job(app, client, headers, video, **form)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    with app.app_context():
        result = render_job.run(job_id)
    assert result.get("frames") == 20, result
    return job_id


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24").astype(int) for frame in container.decode(video=0)]


# -- POST /render ---------------------------------------------------------------------------------


def test_render_is_409_unless_the_job_succeeded(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    for status in (None, JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELLED):
        if status is not None:
            update_job(app, job_id, status=status)
        response = client.post(f"/api/jobs/{job_id}/render", headers=headers)
        assert response.status_code == 409, status
        assert response.json["error"] == "conflict"
        assert (status or JobStatus.QUEUED).value in response.json["message"]
    assert _render_messages(app) == []
    assert client.get(f"/api/jobs/{job_id}", headers=headers).json["render"] is None


def test_render_is_202_then_200_with_the_same_render(app, client, auth: Auth, small_video):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    job_id = succeeded_job(app, client, alice, small_video)
    assert client.get(f"/api/jobs/{job_id}", headers=alice).json["render"] is None
    first = client.post(f"/api/jobs/{job_id}/render", headers=alice)
    assert first.status_code == 202
    assert first.json == {"status": "queued", "frames_done": 0, "percent": 0.0, "error": None, "url": None}
    assert client.get(f"/api/jobs/{job_id}", headers=alice).json["render"] == first.json
    [message] = _render_messages(app)
    assert message["headers"]["id"] == f"{job_id}-render"
    assert message["properties"]["delivery_info"]["routing_key"] == "render"
    again = client.post(f"/api/jobs/{job_id}/render", headers=alice)
    assert again.status_code == 200 and again.json == first.json
    assert len(_render_messages(app)) == 1  # asked twice, sent once
    # Not before the owner's render, not another user's, not without a credential.
    assert client.post(f"/api/jobs/{job_id}/render", headers=bob).status_code == 404
    assert client.post(f"/api/jobs/{job_id}/render").status_code == 401
    assert client.get(f"/api/jobs/{job_id}/video/annotated", headers=alice).status_code == 409


def test_a_broker_failure_is_503_with_retry_after_and_asking_again_starts_the_render(
    app, client, auth: Auth, small_video, monkeypatch
):
    from kombu.exceptions import OperationalError

    from detector.services import media

    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    real_send = media.send_render

    def broker_down(job_id: str) -> None:
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(media, "send_render", broker_down)
    refused = client.post(f"/api/jobs/{job_id}/render", headers=headers)
    assert refused.status_code == 503
    assert refused.json["error"] == "unavailable" and "ask again" in refused.json["message"]
    assert int(refused.headers["Retry-After"]) == media.BROKER_RETRY_AFTER
    # The job says why there is no render, and nothing was sent.
    render = client.get(f"/api/jobs/{job_id}", headers=headers).json["render"]
    assert render["status"] == "failed" and "could not be queued" in render["error"]
    assert _render_messages(app) == []

    monkeypatch.setattr(media, "send_render", real_send)
    again = client.post(f"/api/jobs/{job_id}/render", headers=headers)
    assert again.status_code == 202 and again.json["status"] == "queued"
    assert len(_render_messages(app)) == 1


# -- render_job ---------------------------------------------------------------------------------------


def test_render_job_makes_a_playable_annotated_mp4(app, client, auth: Auth, small_video, tmp_path):
    headers = auth.headers()
    job_id = _rendered(app, client, headers, small_video)
    render = client.get(f"/api/jobs/{job_id}", headers=headers).json["render"]
    assert render == {
        "status": "succeeded",
        "frames_done": 20,
        "percent": 100.0,
        "error": None,
        "url": f"/api/jobs/{job_id}/video/annotated",
    }
    response = client.get(render["url"], headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "video/mp4" and response.headers["Accept-Ranges"] == "bytes"
    assert "clip.annotated.mp4" in response.headers["Content-Disposition"]
    data = response.get_data()
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat")  # index first: plays at once
    path = tmp_path / "annotated.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        assert "mp4" in container.format.name
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
        assert stream.codec_context.pix_fmt == "yuv420p"
    annotated, original = _frames(path), _frames(small_video)
    assert len(annotated) == len(original) == 20
    # The boxes are drawn where the detections are; the rest is the video as it was.
    for i in (0, 6, 12):
        diff = np.abs(annotated[i] - original[i]).sum(axis=2)
        x1, y1, _, y2 = (round(v) for v in objects_of(i)[0]["box"])
        assert diff[y1 + 15 : y2 - 5, x1].mean() > 60, i  # the person's box, its left side
        near = np.zeros(diff.shape, dtype=bool)
        for obj in objects_of(i):
            bx1, by1, bx2, by2 = (round(v) for v in obj["box"])
            near[max(0, by1 - 4) : by2 + 4, max(0, bx1 - 4) : bx2 + 4] = True  # the box
            near[max(0, by1 - 16) : by1, max(0, bx1 - 4) : bx1 + 60] = True  # its label, above
        assert diff[~near].mean() < 15, i


def test_render_of_a_sampled_job_holds_boxes_across_the_stride(
    app, client, auth: Auth, small_video, tmp_path
):
    """Frames between analysed ones show the last analysed frame's boxes (up to the stride)."""
    headers = auth.headers()
    job_id = upload(client, headers, small_video, frame_stride="4").json["id"]
    store_frames(app, job_id, [0, 4, 8, 12, 16], JobStatus.SUCCEEDED)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    with app.app_context():
        assert render_job.run(job_id)["frames"] == 20
    path = tmp_path / "annotated.mp4"
    path.write_bytes(client.get(f"/api/jobs/{job_id}/video/annotated", headers=headers).get_data())
    annotated, original = _frames(path), _frames(small_video)
    diffs = [np.abs(a - o).sum(axis=2) for a, o in zip(annotated, original, strict=True)]
    x1, y1, _, y2 = (round(v) for v in objects_of(0)[0]["box"])
    for i in range(4):  # frame 0's person box on frames 0-3, until the next analysed frame
        assert diffs[i][y1 + 15 : y2 - 5, x1].mean() > 60, i
    assert diffs[4][y1 + 15 : y2 - 5, x1].mean() < 15  # frame 4 has boxes of its own
    x1, y1, _, y2 = (round(v) for v in objects_of(4)[0]["box"])
    assert diffs[4][y1 + 15 : y2 - 5, x1].mean() > 60


def test_a_render_of_an_undecodable_video_fails_with_a_clear_error(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    key = job_row(app, job_id).storage_key
    (Path(app.config["VIDEO_STORAGE"]) / key).write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    with app.app_context():
        result = render_job.run(job_id)
    assert "failed" in result
    render = client.get(f"/api/jobs/{job_id}", headers=headers).json["render"]
    assert render["status"] == "failed" and render["url"] is None
    assert render["error"].startswith("the annotated video could not be made: ")
    assert len(render["error"]) > len("the annotated video could not be made: ") + 5
    # No half-made file is kept; the video endpoint says why there is none.
    assert [p.name for p in stored_videos(app)] == [key]
    annotated = client.get(f"/api/jobs/{job_id}/video/annotated", headers=headers)
    assert annotated.status_code == 409 and render["error"] in annotated.json["message"]
    # A failed render is started again when asked.
    again = client.post(f"/api/jobs/{job_id}/render", headers=headers)
    assert again.status_code == 202 and again.json["status"] == "queued" and again.json["error"] is None


def test_a_render_whose_video_is_gone_fails(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    (Path(app.config["VIDEO_STORAGE"]) / job_row(app, job_id).storage_key).unlink()
    with app.app_context():
        render_job.run(job_id)
    render = client.get(f"/api/jobs/{job_id}", headers=headers).json["render"]
    assert render["status"] == "failed" and "no stored video" in render["error"]
    assert client.get(f"/api/jobs/{job_id}/video", headers=headers).status_code == 404


def test_render_job_does_nothing_without_a_request(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    with app.app_context():
        assert "skipped" in render_job.run(job_id)
    assert client.get(f"/api/jobs/{job_id}", headers=headers).json["render"] is None
    assert len(stored_videos(app)) == 1


# -- GET /video and /video/annotated: Range -------------------------------------------------------


@pytest.mark.parametrize("which", ["video", "video/annotated"])
def test_range_requests(app, client, auth: Auth, small_video, which):
    headers = auth.headers()
    job_id = _rendered(app, client, headers, small_video)
    url = f"/api/jobs/{job_id}/{which}"
    whole = client.get(url, headers=headers)
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    data = whole.get_data()
    size = len(data)
    assert int(whole.headers["Content-Length"]) == size > 1000
    if which == "video":
        assert data == small_video.read_bytes()
    cases = [
        ("bytes=0-99", 0, 99),
        (f"bytes=100-{size // 2}", 100, size // 2),  # the middle
        ("bytes=-50", size - 50, size - 1),  # a suffix
        (f"bytes={size - 10}-", size - 10, size - 1),  # from an offset to the end
        (f"bytes={size - 5}-{size + 100}", size - 5, size - 1),  # an end past the file is cut
    ]
    for header, first, last in cases:
        part = client.get(url, headers={**headers, "Range": header})
        assert part.status_code == 206, header
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}", header
        assert part.headers["Accept-Ranges"] == "bytes"
        assert part.get_data() == data[first : last + 1], header
        assert int(part.headers["Content-Length"]) == last - first + 1
    unsatisfiable = client.get(url, headers={**headers, "Range": f"bytes={size + 10}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers.get("Content-Range") == f"bytes */{size}"
    assert unsatisfiable.is_json and unsatisfiable.json["error"]
    assert unsatisfiable.get_data() != data


def test_videos_are_404_for_another_user_even_with_their_own_credential(app, client, auth: Auth, small_video):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    job_id = _rendered(app, client, alice, small_video)
    bob_key = client.post("/api/keys", headers=bob, json={"name": "k"}).json["key"]
    for which in ("video", "video/annotated"):
        url = f"/api/jobs/{job_id}/{which}"
        assert client.get(url, headers=alice).status_code == 200
        for credential in (bob, {"X-API-Key": bob_key}):
            theirs = client.get(url, headers=credential)
            missing = client.get(url.replace(job_id, "0" * 32), headers=credential)
            assert theirs.status_code == missing.status_code == 404, which
            assert theirs.is_json
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert client.post(f"/api/jobs/{job_id}/media-token", headers=bob).status_code == 404


def test_the_annotated_video_is_404_until_a_render_is_asked_for(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    response = client.get(f"/api/jobs/{job_id}/video/annotated", headers=headers)
    assert response.status_code == 404 and "render" in response.json["message"]


@pytest.mark.parametrize(
    "filename, mimetype",
    [
        ("clip.mp4", "video/mp4"),
        ("clip.webm", "video/webm"),
        ("page.html", "application/octet-stream"),
        ("image.svg", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
    ],
)
def test_the_video_is_sent_as_a_video_type_only(app, client, auth: Auth, small_video, filename, mimetype):
    """The type comes from the user's file name, so only a video type is sent as such: a
    video named page.html is never served as HTML from the API's origin."""
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video, filename=filename)
    response = client.get(f"/api/jobs/{job_id}/video", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.get_data() == small_video.read_bytes()


# -- media tokens -----------------------------------------------------------------------------------


def test_a_media_token_plays_the_jobs_videos_without_a_header(app, client, auth: Auth, small_video):
    reconfigure(app, MEDIA_URL_SECONDS=123)
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    response = client.post(f"/api/jobs/{job_id}/media-token", headers=headers)
    assert response.status_code == 200
    token = response.json
    assert token["expires_in"] == 123
    assert token["video_url"] == f"/api/jobs/{job_id}/video?media_token={token['token']}"
    assert token["annotated_url"] == f"/api/jobs/{job_id}/video/annotated?media_token={token['token']}"
    played = client.get(token["video_url"])
    assert played.status_code == 200 and played.get_data() == small_video.read_bytes()
    part = client.get(token["video_url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.get_data() == small_video.read_bytes()[:100]
    # Its URL goes to no other site in a Referer, and the video is not sniffed as another type.
    assert played.headers["Referrer-Policy"] == "no-referrer"
    assert played.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(token["annotated_url"]).status_code == 404  # not rendered
    client.post(f"/api/jobs/{job_id}/render", headers=headers)
    with app.app_context():
        render_job.run(job_id)
    annotated = client.get(token["annotated_url"], headers={"Range": "bytes=0-7"})
    assert annotated.status_code == 206 and annotated.get_data()[4:8] == b"ftyp"
    # It is a token for the videos only, not a credential for the API.
    assert client.get(f"/api/jobs/{job_id}?media_token={token['token']}").status_code == 401
    assert client.post(f"/api/jobs/{job_id}/render?media_token={token['token']}").status_code == 401
    assert client.post("/api/jobs/" + job_id + "/media-token").status_code == 401


def _tampered(token: str) -> list[str]:
    """``token`` changed in ways its signature must catch. (Not its last character: that
    one's low bits are base64 padding, so some changes to it decode to the same bytes.)"""
    payload, timestamp, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other_user = base64.urlsafe_b64encode(json.dumps({**claims, "u": claims["u"] + 1}).encode()).decode()
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return [
        f"{payload}.{timestamp}.{flipped}",
        f"{other_user.rstrip('=')}.{timestamp}.{signature}",  # another user, the same signature
        f"{payload}.{'A' if timestamp[0] != 'A' else 'B'}{timestamp[1:]}.{signature}",  # another time
        "x" + token,
        f"{timestamp}.{signature}",
        "",
        "not-a-token",
    ]


def test_a_tampered_media_token_is_401(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    token = client.post(f"/api/jobs/{job_id}/media-token", headers=headers).json["token"]
    assert client.get(f"/api/jobs/{job_id}/video?media_token={token}").status_code == 200
    for bad in _tampered(token):
        response = client.get(f"/api/jobs/{job_id}/video", query_string={"media_token": bad})
        assert response.status_code == 401, bad
        assert response.json["error"] == "unauthorized"
        assert "media token" in response.json["message"]
    # A token signed with another secret (another deployment) is refused too.
    from detector.services.media import media_token

    user_id = job_row(app, job_id).owner_id
    forged = media_token("another-secret", user_id, job_id)
    assert client.get(f"/api/jobs/{job_id}/video", query_string={"media_token": forged}).status_code == 401


def test_a_media_token_of_another_job_is_401(app, client, auth: Auth, small_video):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    first = succeeded_job(app, client, alice, small_video)
    second = succeeded_job(app, client, alice, small_video)
    bobs = succeeded_job(app, client, bob, small_video)
    token = client.post(f"/api/jobs/{first}/media-token", headers=alice).json["token"]
    other = client.get(f"/api/jobs/{second}/video", query_string={"media_token": token})
    assert other.status_code == 401 and "not for this job" in other.json["message"]
    bobs_token = client.post(f"/api/jobs/{bobs}/media-token", headers=bob).json["token"]
    assert client.get(f"/api/jobs/{bobs}/video", query_string={"media_token": bobs_token}).status_code == 200
    stolen = client.get(f"/api/jobs/{first}/video", query_string={"media_token": bobs_token})
    assert stolen.status_code == 401
    # A token overrides a credential sent beside it: a bad one is refused even so.
    with_header = client.get(f"/api/jobs/{second}/video", headers=alice, query_string={"media_token": token})
    assert with_header.status_code == 401


def test_an_expired_media_token_is_401(app, client, auth: Auth, small_video, monkeypatch):
    reconfigure(app, MEDIA_URL_SECONDS=60)
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    token = client.post(f"/api/jobs/{job_id}/media-token", headers=headers).json["token"]
    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) + 30)
    assert client.get(f"/api/jobs/{job_id}/video", query_string={"media_token": token}).status_code == 200
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) + 61)
    expired = client.get(f"/api/jobs/{job_id}/video", query_string={"media_token": token})
    assert expired.status_code == 401 and "expired" in expired.json["message"]
    # A new token works again.
    monkeypatch.setattr(TimestampSigner, "get_timestamp", real)
    fresh = client.post(f"/api/jobs/{job_id}/media-token", headers=headers).json["token"]
    assert client.get(f"/api/jobs/{job_id}/video", query_string={"media_token": fresh}).status_code == 200


def test_a_media_token_of_a_deleted_job_finds_nothing(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    token = client.post(f"/api/jobs/{job_id}/media-token", headers=headers).json["token"]
    assert client.delete(f"/api/jobs/{job_id}", headers=headers).status_code == 204
    assert client.get(f"/api/jobs/{job_id}/video", query_string={"media_token": token}).status_code == 404


# -- delete ----------------------------------------------------------------------------------------


def test_delete_removes_the_video_and_the_render(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = _rendered(app, client, headers, small_video)
    stored = {p.name for p in stored_videos(app)}
    assert stored == {job_row(app, job_id).storage_key, render_row(app, job_id).key}
    assert client.delete(f"/api/jobs/{job_id}", headers=headers).status_code == 204
    assert stored_videos(app) == []
    for which in ("video", "video/annotated"):
        assert client.get(f"/api/jobs/{job_id}/{which}", headers=headers).status_code == 404


def test_a_render_finishing_after_its_job_was_deleted_keeps_no_file(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    client.post(f"/api/jobs/{job_id}/render", headers=headers)
    key = job_row(app, job_id).storage_key
    copy = Path(app.config["VIDEO_STORAGE"]) / key
    data = copy.read_bytes()
    assert client.delete(f"/api/jobs/{job_id}", headers=headers).status_code == 204
    copy.write_bytes(data)  # as if the worker still had the file open
    with app.app_context():
        assert "skipped" in render_job.run(job_id)
    assert [p.name for p in stored_videos(app)] == [key]


# -- the watchdog ----------------------------------------------------------------------------------


def _stalled_render(app, client, headers, video: Path, deliveries: int, age: timedelta) -> str:
    job_id = succeeded_job(app, client, headers, video)
    assert client.post(f"/api/jobs/{job_id}/render", headers=headers).status_code == 202
    update_render(
        app,
        job_id,
        status=RenderStatus.RENDERING,
        deliveries=deliveries,
        frames_done=10,
        progress_at=utcnow() - age,
    )
    return job_id


def test_a_stalled_render_is_sent_again(app, client, auth: Auth, small_video):
    headers = auth.headers()
    # Silent for an hour: past the 60 s stall, and past the 610 s a live render may go
    # without progress (RENDER_BASE_SECONDS 600 + 50 frames at 0.2 s; rendering.alive_for).
    job_id = _stalled_render(app, client, headers, small_video, 1, timedelta(hours=1))
    moving = _stalled_render(app, client, headers, small_video, 1, timedelta(seconds=5))
    before = len(_render_messages(app))
    with app.app_context():
        assert watch_renders(timedelta(seconds=60)) == (1, 0)
    sent = _render_messages(app)[before:]
    assert [m["headers"]["id"] for m in sent] == [f"{job_id}-render"]
    render = render_row(app, job_id)
    assert render.status is RenderStatus.RENDERING
    assert utcnow() - render.progress_at < timedelta(seconds=60)  # not resent again at once
    with app.app_context():
        assert watch_renders(timedelta(seconds=60)) == (0, 0)
    assert render_row(app, moving).status is RenderStatus.RENDERING
    # The resent message, run, makes the render.
    with app.app_context():
        assert render_job.run(job_id)["frames"] == 20
    assert client.get(f"/api/jobs/{job_id}", headers=headers).json["render"]["status"] == "succeeded"


def test_the_watchdog_task_resends_stalled_renders(app, client, auth: Auth, small_video):
    reconfigure(app, JOB_STALL_SECONDS=60)
    headers = auth.headers()
    job_id = _stalled_render(app, client, headers, small_video, 0, timedelta(minutes=10))
    update_render(app, job_id, status=RenderStatus.QUEUED)  # its message was lost
    with app.app_context():
        counts = watchdog()
    assert counts["renders_resent"] == 1 and counts["renders_failed"] == 0
    assert [m["headers"]["id"] for m in _render_messages(app)][-1] == f"{job_id}-render"


def test_a_render_stalled_after_the_last_delivery_fails(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = _stalled_render(app, client, headers, small_video, MAX_RENDER_DELIVERIES, timedelta(hours=1))
    before = len(_render_messages(app))
    with app.app_context():
        assert watch_renders(timedelta(seconds=60)) == (0, 1)
    assert len(_render_messages(app)) == before
    render = client.get(f"/api/jobs/{job_id}", headers=headers).json["render"]
    assert render["status"] == "failed" and render["url"] is None
    assert "no progress for 610 s" in render["error"] and f"{MAX_RENDER_DELIVERIES} times" in render["error"]
    annotated = client.get(f"/api/jobs/{job_id}/video/annotated", headers=headers)
    assert annotated.status_code == 409 and render["error"] in annotated.json["message"]
    with app.app_context():
        assert watch_renders(timedelta(seconds=60)) == (0, 0)  # failed once, left alone
        assert "skipped" in render_job.run(job_id)  # a late message does nothing
    restarted = client.post(f"/api/jobs/{job_id}/render", headers=headers)
    assert restarted.status_code == 202 and restarted.json["status"] == "queued"


def test_a_render_delivered_too_often_fails_instead_of_starting(app, client, auth: Auth, small_video):
    """Each delivery that starts the render counts; past MAX_RENDER_DELIVERIES the render
    is failed (its worker died every time), not drawn again."""
    headers = auth.headers()
    job_id = _stalled_render(app, client, headers, small_video, MAX_RENDER_DELIVERIES, timedelta(0))
    with app.app_context():
        assert "skipped" in render_job.run(job_id)
    render = client.get(f"/api/jobs/{job_id}", headers=headers).json["render"]
    assert render["status"] == "failed"
    assert f"started {MAX_RENDER_DELIVERIES} times" in render["error"]
    assert len(stored_videos(app)) == 1
