"""POST /api/jobs with callback_url and source_url, the webhook secret and deliveries
endpoints, the watchdog's care of downloads, and one delivery attempt in-process
(to receivers on loopback). No worker processes."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery.exceptions import Retry

from detector.db import db
from detector.models import Job, JobDownload, JobStatus, User, WebhookEvent, utcnow
from detector.pipeline import webhooks
from detector.pipeline.download import MAX_DOWNLOAD_DELIVERIES
from detector.pipeline.tasks import deliver_webhook, watchdog
from tests.conftest import reconfigure
from tests.integrations.docs_code import documented_verify
from tests.integrations.servers import answer, serve


def _queued_tasks(app) -> list[dict]:
    folder = Path(app.config["DATA_DIR"]) / "broker" / "queue"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.msg"))]


def _task_names(app) -> list[str]:
    return [m["headers"]["task"] for m in _queued_tasks(app)]


def _submit(client, headers, video: Path | None = None, **form):
    data = dict(form)
    if video is not None:
        data["video"] = (io.BytesIO(video.read_bytes()), video.name)
    return client.post("/api/jobs", headers=headers, content_type="multipart/form-data", data=data)


def _jobs_and_files(app) -> tuple[int, list[Path]]:
    with app.app_context():
        count = db.session.query(Job).count()
    root = Path(app.config["VIDEO_STORAGE"])
    return count, [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.8/hook",
        "http://169.254.169.254/latest",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_a_loopback_or_private_callback_url_is_refused(app, client, auth, small_video, url):
    response = _submit(client, auth.headers(), small_video, callback_url=url)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_input"
    assert response.json["message"].startswith("callback_url: ")
    assert "address" in response.json["message"]
    assert _jobs_and_files(app) == (0, [])


def test_a_loopback_source_url_is_refused(app, client, auth):
    response = _submit(client, auth.headers(), source_url="http://127.0.0.1:8000/v.mp4")
    assert response.status_code == 400
    assert "source_url: " in response.json["message"] and "loopback" in response.json["message"]
    assert _jobs_and_files(app) == (0, [])
    assert "detector.download_video" not in _task_names(app)


@pytest.mark.parametrize("field", ["source_url", "callback_url"])
@pytest.mark.parametrize("url", ["ftp://example.com/v.mp4", "file:///etc/passwd", "not a url"])
def test_only_http_and_https(app, client, auth, small_video, field, url):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    video = small_video if field == "callback_url" else None
    response = _submit(client, auth.headers(), video, **{field: url})
    assert response.status_code == 400
    assert response.json["message"].startswith(f"{field}: ")


def test_exactly_one_of_video_and_source_url(app, client, auth, small_video):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    headers = auth.headers()
    both = _submit(client, headers, small_video, source_url="http://127.0.0.1:9/v.mp4")
    assert both.status_code == 400 and "not both" in both.json["message"]
    neither = _submit(client, headers, score_threshold="0.5")
    assert neither.status_code == 400 and "source_url" in neither.json["message"]
    assert _jobs_and_files(app) == (0, [])


def test_a_source_url_job_starts_downloading(app, client, auth):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    headers = auth.headers()
    response = _submit(client, headers, source_url="http://127.0.0.1:9/clips/street%20cam.mp4")
    assert response.status_code == 202, response.json
    job = response.json
    assert job["status"] == "downloading"
    assert job["filename"] == "street cam.mp4"
    assert job["source_url"] == "http://127.0.0.1:9/clips/street%20cam.mp4"
    assert job["bytes_downloaded"] == 0
    messages = [m for m in _queued_tasks(app) if m["headers"]["task"] == "detector.download_video"]
    assert [m["headers"]["id"] for m in messages] == [f"{job['id']}-download"]
    assert client.get(f"/api/jobs/{job['id']}", headers=headers).json["status"] == "downloading"
    # Cancelling a downloading job works like any unfinished job.
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"


def test_the_first_callback_url_shows_the_secret_once_and_rotation_replaces_it(
    app, client, auth, small_video
):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    headers = auth.headers()
    first = _submit(client, headers, small_video, callback_url="http://127.0.0.1:9/hook")
    assert first.status_code == 202, first.json
    secret = first.headers.get("Detector-Webhook-Secret")
    assert secret and secret.startswith("whsec_")
    assert first.json["callback_url"] == "http://127.0.0.1:9/hook"
    second = _submit(client, headers, small_video, callback_url="http://127.0.0.1:9/hook")
    assert second.status_code == 202 and "Detector-Webhook-Secret" not in second.headers
    rotated = client.post("/api/auth/webhook-secret", headers=headers)
    assert rotated.status_code == 201
    assert rotated.json["secret"].startswith("whsec_") and rotated.json["secret"] != secret
    with app.app_context():
        assert webhooks.signing_secret(db.session.query(User).one().id)[0] == rotated.json["secret"]
    assert client.post("/api/auth/webhook-secret").status_code == 401


def test_a_refused_upload_still_shows_the_secret_it_created(app, client, auth, small_video):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    headers = auth.headers()
    bad = client.post(
        "/api/jobs",
        headers=headers,
        content_type="multipart/form-data",
        data={"video": (io.BytesIO(b"not a video"), "x.mp4"), "callback_url": "http://127.0.0.1:9/h"},
    )
    assert bad.status_code == 415 and bad.json["error"] == "unsupported_media"
    # The secret was made by this request: its answer shows it, though the upload was refused.
    secret = bad.headers["Detector-Webhook-Secret"]
    assert secret.startswith("whsec_")
    with app.app_context():
        assert webhooks.signing_secret(db.session.query(User).one().id)[0] == secret
    # It is the secret from now on, and it is not shown again.
    good = _submit(client, headers, small_video, callback_url="http://127.0.0.1:9/hook")
    assert good.status_code == 202 and "Detector-Webhook-Secret" not in good.headers
    # A refusal before any secret was needed (a bad callback_url) makes none.
    reconfigure(app, ALLOW_PRIVATE_URLS=False)
    other = auth.headers("other")
    refused = _submit(client, other, small_video, callback_url="http://127.0.0.1:9/hook")
    assert refused.status_code == 400 and "Detector-Webhook-Secret" not in refused.headers


def test_the_webhook_endpoint_is_the_owners_only(app, client, auth, small_video):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    alice = auth.headers("alice")
    job = _submit(client, alice, small_video, callback_url="http://127.0.0.1:9/hook").json
    got = client.get(f"/api/jobs/{job['id']}/webhook", headers=alice)
    assert got.status_code == 200
    assert got.json == {"job_id": job["id"], "callback_url": "http://127.0.0.1:9/hook", "events": []}
    assert client.get(f"/api/jobs/{job['id']}/webhook", headers=auth.headers("mallory")).status_code == 404
    # Cancelling ends the job: its event is recorded and its delivery sent.
    client.post(f"/api/jobs/{job['id']}/cancel", headers=alice)
    events = client.get(f"/api/jobs/{job['id']}/webhook", headers=alice).json["events"]
    assert [(e["type"], e["status"], e["attempts"]) for e in events] == [("job.cancelled", "pending", [])]
    assert [
        m["headers"]["id"] for m in _queued_tasks(app) if m["headers"]["task"] == "detector.deliver_webhook"
    ] == [events[0]["id"]]


def _event(app, client, auth, small_video, url: str) -> tuple[str, str]:
    """A cancelled job's pending event for ``url``, and the owner's secret."""
    headers = auth.headers()
    response = _submit(client, headers, small_video, callback_url=url)
    assert response.status_code == 202, response.json
    secret = response.headers["Detector-Webhook-Secret"]
    client.post(f"/api/jobs/{response.json['id']}/cancel", headers=headers)
    with app.app_context():
        return db.session.query(WebhookEvent).one().id, secret


def test_one_attempt_signs_the_event_and_records_it(app, client, auth, small_video):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    verify = documented_verify()
    with serve({"/hook": lambda h, r, n: answer(h, 204)}) as (base, recorder):
        event_id, secret = _event(app, client, auth, small_video, base + "/hook")
        with app.app_context():
            deliver_webhook.run(event_id)
        (got,) = recorder.of("/hook")
    assert verify(secret, got.headers["Detector-Signature"], got.body)
    assert not verify(secret, got.headers["Detector-Signature"], got.body + b" ")
    assert not verify("whsec_wrong", got.headers["Detector-Signature"], got.body)
    event = json.loads(got.body)
    assert event["id"] == event_id == got.headers["Detector-Event-Id"]
    assert event["type"] == "job.cancelled" and event["job"]["status"] == "cancelled"
    assert event["job"]["links"]["job"] == f"/api/jobs/{event['job']['id']}"
    with app.app_context():
        row = db.session.get(WebhookEvent, event_id)
        assert row.status == "delivered" and [a["status_code"] for a in row.attempts] == [204]
        deliver_webhook.run(event_id)  # a redelivered message: already delivered, nothing sent
    assert len(recorder.of("/hook")) == 1


def test_a_failed_attempt_is_recorded_and_retried_later(app, client, auth, small_video):
    reconfigure(app, ALLOW_PRIVATE_URLS=True, WEBHOOK_BACKOFF_SECONDS=7.0)
    with serve({"/hook": lambda h, r, n: answer(h, 500, b"boom")}) as (base, _recorder):
        event_id, _ = _event(app, client, auth, small_video, base + "/hook")
        with app.app_context(), pytest.raises(Retry):
            deliver_webhook.run(event_id)
        with app.app_context(), pytest.raises(Retry):
            deliver_webhook.run(event_id)
    with app.app_context():
        row = db.session.get(WebhookEvent, event_id)
        assert row.status == "pending"
        assert [(a["status_code"], a["error"]) for a in row.attempts] == [(500, "HTTP 500")] * 2
        # 7 s, then 14 s: the delay doubles.
        wait = (row.next_attempt_at - utcnow()).total_seconds()
        assert 12 < wait <= 14


def test_an_unreachable_receiver_is_given_up_after_the_retry_window(app, client, auth, small_video):
    reconfigure(app, ALLOW_PRIVATE_URLS=True, WEBHOOK_RETRY_HOURS=0.0)
    with serve({}) as (base, _):
        pass  # closed: nothing listens there any more
    event_id, _ = _event(app, client, auth, small_video, base + "/hook")
    with app.app_context():
        deliver_webhook.run(event_id)  # no Retry: the window is over
        row = db.session.get(WebhookEvent, event_id)
        assert row.status == "failed"
        assert row.attempts[0]["status_code"] is None and "ConnectionError" in row.attempts[0]["error"]


def test_a_target_that_became_private_is_refused_at_delivery(app, client, auth, small_video):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    with serve({"/hook": lambda h, r, n: answer(h, 200)}) as (base, recorder):
        event_id, _ = _event(app, client, auth, small_video, base + "/hook")
        reconfigure(app, ALLOW_PRIVATE_URLS=False)
        with app.app_context(), pytest.raises(Retry):
            deliver_webhook.run(event_id)
        assert recorder.requests == []
    with app.app_context():
        assert db.session.get(WebhookEvent, event_id).attempts[0]["error"].startswith("refused: ")


def test_attempts_of_two_deliveries_at_once_are_both_recorded(app, client, auth, small_video):
    """A retry and the watchdog's resend of one event POST at the same time: each
    records its attempt, and neither overwrites the other's."""
    from sqlalchemy import event as sa_event

    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    with serve({"/hook": lambda h, r, n: answer(h, 500)}) as (base, _recorder):
        event_id, _ = _event(app, client, auth, small_video, base + "/hook")
        headers = auth.headers()
        interleaved = []

        def other_delivery_first(conn, cursor, statement, parameters, context, executemany):
            # Just before this delivery writes its attempt, the other one records its own
            # (it read the event after this one did): the two interleave.
            if statement.startswith("UPDATE webhook_events") and not interleaved:
                interleaved.append(True)
                other = threading.Thread(target=other_delivery)  # a session of its own
                other.start()
                other.join(30)

        def other_delivery():
            with app.app_context():
                webhooks.record_attempt(
                    event_id, {"at": utcnow().isoformat(), "status_code": 204, "error": None}, delivered=True
                )

        with app.app_context():
            from detector.db import db as database

            sa_event.listen(database.engine, "before_cursor_execute", other_delivery_first)
            try:
                deliver_webhook.run(event_id)  # a 500: no retry, the event was delivered meanwhile
            finally:
                sa_event.remove(database.engine, "before_cursor_execute", other_delivery_first)
    assert interleaved
    job_id = client.get("/api/jobs", headers=headers).json["jobs"][0]["id"]
    [event] = client.get(f"/api/jobs/{job_id}/webhook", headers=headers).json["events"]
    assert event["status"] == "delivered"
    assert sorted(a["status_code"] for a in event["attempts"]) == [204, 500]
    with app.app_context():
        assert db.session.get(WebhookEvent, event_id).attempt_count == 2


def test_signatures_reject_forgeries_and_stale_timestamps():
    verify = documented_verify()
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    good = webhooks.sign("whsec_s", now, body)
    assert verify("whsec_s", good, body) and webhooks.verify("whsec_s", good, body)
    forged = f"t={now},v1={'0' * 64}"
    assert not verify("whsec_s", forged, body)
    stale = webhooks.sign("whsec_s", now - 3600, body)
    assert not verify("whsec_s", stale, body) and not webhooks.verify("whsec_s", stale, body)
    assert not verify("whsec_s", "garbage", body)
    assert not verify("whsec_s", f"t=,v1={good.split('v1=')[1]}", body)


def _downloading_job(app, deliveries: int, idle: timedelta) -> str:
    with app.app_context():
        session = db.session
        user = User(username="w", password_hash="x")
        session.add(user)
        session.flush()
        then = utcnow() - idle
        job = Job(
            owner_id=user.id,
            original_filename="v.mp4",
            storage_key="",
            status=JobStatus.DOWNLOADING,
            score_threshold=0.5,
            source_url="http://127.0.0.1:9/v.mp4",
            created_at=then,
            download=JobDownload(progress_at=then, deliveries=deliveries),
        )
        session.add(job)
        session.commit()
        return job.id


def test_the_watchdog_resends_a_stalled_download(app):
    reconfigure(app, JOB_STALL_SECONDS=60)
    job_id = _downloading_job(app, deliveries=1, idle=timedelta(seconds=120))
    with app.app_context():
        counts = watchdog.run()
        assert counts["resent"] == 1 and counts["failed"] == 0
        assert db.session.get(Job, job_id).status is JobStatus.DOWNLOADING
    assert "detector.download_video" in _task_names(app)


def test_the_watchdog_leaves_a_moving_download_alone(app):
    reconfigure(app, JOB_STALL_SECONDS=60)
    _downloading_job(app, deliveries=1, idle=timedelta(seconds=5))
    with app.app_context():
        counts = watchdog.run()
    assert counts["resent"] == 0 and counts["failed"] == 0
    assert "detector.download_video" not in _task_names(app)


def test_the_watchdog_fails_a_download_that_keeps_stalling(app):
    reconfigure(app, JOB_STALL_SECONDS=60)
    job_id = _downloading_job(app, deliveries=MAX_DOWNLOAD_DELIVERIES, idle=timedelta(seconds=120))
    with app.app_context():
        counts = watchdog.run()
        job = db.session.get(Job, job_id)
        assert counts["failed"] == 1 and job.status is JobStatus.FAILED
        assert "download made no progress" in job.error
