"""Idempotent submits: the Idempotency-Key header of POST /api/jobs."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

from detector.db import db
from detector.models import IdempotencyKey, Job
from tests.api.test_jobs import job_count, queued_messages, stored_videos, upload
from tests.conftest import Auth


def test_same_key_twice_gives_one_job_one_file_one_message(app, client, auth: Auth, small_video):
    headers = {**auth.headers(), "Idempotency-Key": "k-1"}
    first = upload(client, headers, small_video, score_threshold=0.3)
    assert first.status_code == 202
    second = upload(client, headers, small_video, score_threshold=0.3)
    assert second.status_code == 200
    assert second.json == first.json
    assert second.headers["Location"] == first.headers["Location"]
    assert job_count(app) == 1
    assert len(stored_videos(app)) == 1
    assert len(queued_messages(app)) == 1
    # No upload left behind in the incoming area either.
    assert stored_videos(app)[0].parent.name != ".incoming"


def test_without_the_header_every_submit_is_a_job(app, client, auth: Auth, small_video):
    headers = auth.headers()
    upload(client, headers, small_video)
    upload(client, headers, small_video)
    assert job_count(app) == 2


def test_same_key_other_parameters_is_422(app, client, auth: Auth, small_video):
    headers = {**auth.headers(), "Idempotency-Key": "k-2"}
    assert upload(client, headers, small_video, score_threshold=0.3).status_code == 202
    content = small_video.read_bytes()
    variants = [
        dict(path=small_video, score_threshold=0.4),
        dict(path=small_video, score_threshold=0.3, filename="other.mp4"),
        dict(data=content + b"\0", score_threshold=0.3),  # another size
        dict(data=content[:-1] + bytes([content[-1] ^ 1]), score_threshold=0.3),  # same size, other bytes
        dict(path=small_video, score_threshold=0.3, note="any other form field counts too"),
        dict(path=small_video),
    ]
    for variant in variants:
        response = upload(client, headers, **variant)
        assert response.status_code == 422, variant
        assert response.json["error"] == "idempotency_key_reused"
    assert job_count(app) == 1
    assert len(stored_videos(app)) == 1
    assert len(queued_messages(app)) == 1


def test_keys_are_per_user(app, client, auth: Auth, small_video):
    alice = {**auth.headers("alice"), "Idempotency-Key": "same"}
    bob = {**auth.headers("bob"), "Idempotency-Key": "same"}
    a = upload(client, alice, small_video)
    b = upload(client, bob, small_video)
    assert a.status_code == b.status_code == 202
    assert a.json["id"] != b.json["id"]


def test_a_key_older_than_its_lifetime_makes_a_new_job(app, client, auth: Auth, small_video):
    headers = {**auth.headers(), "Idempotency-Key": "old"}
    first = upload(client, headers, small_video).json["id"]
    with app.app_context():
        record = db.session.query(IdempotencyKey).one()
        record.created_at -= timedelta(hours=app.config["IDEMPOTENCY_KEY_HOURS"], seconds=1)
        db.session.commit()
    # Even with other parameters: the old key is free again.
    second = upload(client, headers, small_video, score_threshold=0.7)
    assert second.status_code == 202
    assert second.json["id"] != first
    assert job_count(app) == 2
    with app.app_context():
        assert [r.job_id for r in db.session.query(IdempotencyKey)] == [second.json["id"]]


def test_deleting_the_job_frees_its_key(app, client, auth: Auth, small_video):
    headers = {**auth.headers(), "Idempotency-Key": "gone"}
    first = upload(client, headers, small_video).json["id"]
    assert client.delete(f"/api/jobs/{first}", headers=headers).status_code == 204
    second = upload(client, headers, small_video)
    assert second.status_code == 202 and second.json["id"] != first


def test_bad_keys_are_400(client, auth: Auth, small_video):
    for key in ("", "x" * 256, "caf\u00e9"):
        headers = {**auth.headers(), "Idempotency-Key": key.encode("utf-8").decode("latin-1")}
        response = upload(client, headers, small_video)
        assert response.status_code == 400, key
        assert response.json["error"] == "invalid_input"


def test_concurrent_submits_with_one_key_make_one_job(app, auth: Auth, small_video):
    headers = {**auth.headers(), "Idempotency-Key": "race"}
    content = small_video.read_bytes()
    threads_n = 6
    barrier = threading.Barrier(threads_n)
    answers: list = [None] * threads_n

    def submit(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        answers[i] = client.post(
            "/api/jobs",
            headers=headers,
            data={"video": (io.BytesIO(content), "clip.mp4")},
            content_type="multipart/form-data",
        )

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(202) == 1 and statuses.count(200) == threads_n - 1, [
        (a.status_code, a.json) for a in answers
    ]
    assert len({a.json["id"] for a in answers}) == 1
    assert job_count(app) == 1
    assert len(stored_videos(app)) == 1
    assert len(queued_messages(app)) == 1


def test_the_race_loser_discards_its_upload_and_answers_the_winner(
    app, client, auth: Auth, small_video, monkeypatch
):
    """Force the race: the loser's look-up misses the winner's key (as when both look
    before either commits), so it fails on the unique constraint."""
    from detector.services import idempotency

    headers = {**auth.headers(), "Idempotency-Key": "forced"}
    winner = upload(client, headers, small_video)
    assert winner.status_code == 202
    real = idempotency._live_record
    calls = {"n": 0}

    def miss_first(*args, **kwargs):
        calls["n"] += 1
        return None if calls["n"] == 1 else real(*args, **kwargs)

    monkeypatch.setattr(idempotency, "_live_record", miss_first)
    loser = upload(client, headers, small_video)
    assert calls["n"] == 2  # the first look-up missed, the one after the IntegrityError found it
    assert loser.status_code == 200 and loser.json["id"] == winner.json["id"]
    assert job_count(app) == 1
    assert len(stored_videos(app)) == 1
    assert len(queued_messages(app)) == 1
    with app.app_context():
        assert db.session.query(Job).one().id == winner.json["id"]
