"""GET /api/search (moments across the caller's jobs) and track thumbnails
(GET /api/jobs/<id>/tracks/<track_id>/thumbnail), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image
from sqlalchemy import insert, select

from detector.db import db
from detector.models import (
    Analytics,
    AnalyticsStatus,
    Chunk,
    FrameDetections,
    Job,
    JobStatus,
    Track,
    TrackThumbnail,
)
from detector.pipeline.tasks import track_objects
from detector.services import search as search_service
from detector.video import index_frames, plan_chunks
from detector.video.synthetic import frame_image
from tests.api.test_jobs import upload
from tests.conftest import Auth

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def user_id(client, headers) -> int:
    return client.get("/api/auth/me", headers=headers).json["id"]


def make_job(
    app, owner: int, age_hours: float, tracks: list[tuple[str, float, float]], fps: float = 10.0
) -> str:
    """A succeeded tracked job of ``owner`` created ``age_hours`` before T0, with ``tracks``
    (label, first and last second), straight into the database."""
    job_id = uuid.uuid4().hex
    with app.app_context():
        db.session.execute(
            insert(Job).values(
                id=job_id,
                owner_id=owner,
                original_filename=f"{job_id[:6]}.mp4",
                storage_key="",
                status=JobStatus.SUCCEEDED,
                score_threshold=0.5,
                track=True,
                fps=fps,
                frame_count=10_000,
                duration=1000.0,
                created_at=T0 - timedelta(hours=age_hours),
                tracks_total=len(tracks),
            )
        )
        if tracks:
            db.session.execute(
                insert(Track),
                [
                    {
                        "job_id": job_id,
                        "track_id": n,
                        "label": label,
                        "class_id": 1,
                        "first_frame": round(first * fps),
                        "last_frame": round(last * fps),
                        "first_timestamp": first,
                        "last_timestamp": last,
                        "frames": 1,
                        "mean_score": 0.9,
                    }
                    for n, (label, first, last) in enumerate(tracks, start=1)
                ],
            )
        db.session.commit()
    return job_id


def search(client, headers, **params):
    return client.get("/api/search", headers=headers, query_string=params)


def every_page(client, headers, **params) -> tuple[list[dict], int]:
    """All moments, following next_cursor; and the number of pages."""
    moments, pages, cursor = [], 0, None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = search(client, headers, **query)
        assert response.status_code == 200, response.json
        moments += response.json["moments"]
        pages += 1
        cursor = response.json["next_cursor"]
        if cursor is None:
            return moments, pages
        assert pages < 50


def test_moments_of_every_job_newest_first_with_their_tracks(app, client, auth: Auth):
    alice = auth.headers("alice")
    owner = user_id(client, alice)
    old = make_job(app, owner, 5, [("person", 1, 9), ("dog", 4, 12), ("person", 20, 22), ("dog", 21.5, 30)])
    new = make_job(app, owner, 1, [("dog", 0, 3), ("person", 2, 6)])
    make_job(app, owner, 2, [("person", 0, 50)])  # no dog: no moment
    make_job(app, owner, 3, [("dog", 0, 5), ("person", 6, 9)])  # apart: a moment only with a window

    response = search(client, alice, labels="person,dog")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["labels"] == ["person", "dog"] and body["next_cursor"] is None
    got = [(m["job_id"], m["start_time"], m["end_time"]) for m in body["moments"]]
    assert got == [(new, 2, 3), (old, 4, 9), (old, 21.5, 22)]
    first = body["moments"][0]
    assert (first["start_frame"], first["end_frame"], first["duration"]) == (20, 30, 1)
    assert [(t["track_id"], t["label"]) for t in first["tracks"]] == [(1, "dog"), (2, "person")]
    assert first["tracks_total"] == 2
    assert all(t["thumbnail_url"] is None for t in first["tracks"])  # none were made for these
    assert first["player_url"] == f"/#/jobs/{new}?t=2"
    assert first["filename"] == f"{new[:6]}.mp4"

    # A window of 2 s joins the labels seen a second apart; min_duration drops short moments.
    windowed = search(client, alice, labels="dog, person", window="2").json["moments"]
    assert len(windowed) == 4
    long = search(client, alice, labels="person,dog", min_duration="4.5").json["moments"]
    assert [(m["job_id"], m["start_time"]) for m in long] == [(old, 4)]


def test_paging_by_cursor_returns_every_moment_once_in_order(app, client, auth: Auth):
    alice = auth.headers("alice")
    owner = user_id(client, alice)
    expected = []
    for age in range(5):
        tracks = [("car", 10 * k, 10 * k + 5) for k in range(age + 1)]
        job_id = make_job(app, owner, age, tracks)
        expected += [(job_id, 10.0 * k) for k in range(age + 1)]
    # Two jobs made the same second: the job id decides their order.
    twins = sorted((make_job(app, owner, 9, [("car", 1, 2)]) for _ in range(2)), reverse=True)
    expected += [(job_id, 1.0) for job_id in twins]

    for limit in (1, 2, 4, 100):
        moments, pages = every_page(client, alice, labels="car", limit=limit)
        assert [(m["job_id"], m["start_time"]) for m in moments] == expected
        assert pages == -(-len(expected) // limit)


def test_a_page_looks_at_a_bounded_number_of_jobs(app, client, auth: Auth, monkeypatch):
    monkeypatch.setattr(search_service, "SCAN_JOBS", 2)
    alice = auth.headers("alice")
    owner = user_id(client, alice)
    ids = [make_job(app, owner, age, [("person", 0, 5), ("dog", 6, 9)]) for age in range(5)]
    with_moments = make_job(app, owner, 10, [("person", 0, 5), ("dog", 1, 9)])
    first = search(client, alice, labels="person,dog").json
    assert first["moments"] == [] and first["next_cursor"] is not None
    moments, pages = every_page(client, alice, labels="person,dog")
    assert [m["job_id"] for m in moments] == [with_moments]
    assert pages == 4  # 2 + 2 + 2 jobs looked at, then none left
    assert len(ids) == 5


def test_another_users_jobs_are_never_found(app, client, auth: Auth):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    make_job(app, user_id(client, alice), 1, [("person", 0, 10)])
    bobs = make_job(app, user_id(client, bob), 2, [("person", 0, 10)])
    assert [m["job_id"] for m in search(client, bob, labels="person").json["moments"]] == [bobs]
    mallory = auth.headers("mallory")
    assert search(client, mallory, labels="person").json == {
        "labels": ["person"],
        "window": 0.0,
        "min_duration": 0.0,
        "limit": 20,
        "next_cursor": None,
        "moments": [],
    }
    # A cursor made from alice's job shows mallory nothing of alice's either.
    cursor = search_service.Cursor(T0, "f" * 32, 0).encode()
    assert search(client, mallory, labels="person", cursor=cursor).json["moments"] == []
    assert search(client, {}, labels="person").status_code == 401


BAD = [
    ({}, "labels"),
    ({"labels": ""}, "labels"),
    ({"labels": "person,,dog"}, "labels"),
    ({"labels": " , dog"}, "labels"),
    ({"labels": ",".join(f"l{i}" for i in range(11))}, "labels"),
    ({"labels": "a\x00b"}, "labels"),
    ({"labels": "x" * 1001}, "labels"),
    ({"labels": "person", "window": "-1"}, "window"),
    ({"labels": "person", "window": "abc"}, "window"),
    ({"labels": "person", "window": "nan"}, "window"),
    ({"labels": "person", "window": "3601"}, "window"),
    ({"labels": "person", "min_duration": "inf"}, "min_duration"),
    ({"labels": "person", "min_duration": "-0.5"}, "min_duration"),
    ({"labels": "person", "limit": "0"}, "limit"),
    ({"labels": "person", "limit": "101"}, "limit"),
    ({"labels": "person", "cursor": "not-a-cursor"}, "cursor"),
    ({"labels": "person", "cursor": "eyJjIjoxfQ"}, "cursor"),
    ({"labels": "person", "zone": "1:door"}, "zone"),
    ({"labels": "person", "zone": "0123456789abcdef"}, "zone"),
    ({"labels": "person", "zone": "0123456789abcdef:door"}, "zone"),  # no such analytics of hers
]


def test_bad_parameters_are_400_naming_the_field(client, auth: Auth):
    alice = auth.headers("alice")
    for params, field in BAD:
        response = search(client, alice, **params)
        assert response.status_code == 400, (params, response.json)
        assert response.json["error"] == "invalid_input"
        assert response.json["message"].startswith(f"{field}:"), response.json["message"]
    assert (
        search(client, alice, labels="person", window="3600", min_duration="86400", limit="100").status_code
        == 200
    )


def add_zone_analytics(
    app, job_id: str, analytics_id: str, visits: list[tuple[int, str, float, float]]
) -> None:
    """A succeeded analytics ``analytics_id`` of the job with a zone "door", whose events
    are ``visits`` (track id, label, entry and exit second)."""
    events = []
    for track_id, label, entry, exit_ in visits:
        for event, at in (("enter", entry), ("exit", exit_)):
            events.append(
                {
                    "track_id": track_id,
                    "label": label,
                    "rule": "door",
                    "kind": "zone",
                    "event": event,
                    "direction": None,
                    "frame": round(at * 10),
                    "timestamp": at,
                }
            )
    events.sort(key=lambda e: e["timestamp"])
    spec = {"zones": [{"name": "door", "polygon": [[0, 0], [10, 0], [10, 10]]}], "lines": []}
    with app.app_context():
        db.session.execute(
            insert(Analytics).values(
                job_id=job_id,
                id=analytics_id,
                spec=spec,
                status=AnalyticsStatus.SUCCEEDED,
                results={"events": events},
            )
        )
        db.session.commit()


def test_moments_inside_a_zone_come_from_the_tracks_visits_to_it(app, client, auth: Auth):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    owner = user_id(client, alice)
    aid = "0123456789abcdef"
    # Together from 0 to 20 s in the video, but in the zone together only from 5 to 8 s.
    zoned = make_job(app, owner, 1, [("person", 0, 20), ("dog", 0, 20)])
    add_zone_analytics(app, zoned, aid, [(1, "person", 2, 8), (2, "dog", 5, 12), (1, "person", 15, 18)])
    # Another job without that analytics: left out of a zone search.
    make_job(app, owner, 2, [("person", 0, 20), ("dog", 0, 20)])
    plain = search(client, alice, labels="person,dog").json["moments"]
    assert len(plain) == 2
    inside = search(client, alice, labels="person,dog", zone=f"{aid}:door")
    assert inside.status_code == 200, inside.json
    assert [(m["job_id"], m["start_time"], m["end_time"]) for m in inside.json["moments"]] == [(zoned, 5, 8)]
    # The person alone: two visits, two moments.
    person = search(client, alice, labels="person", zone=f"{aid}:door").json["moments"]
    assert [(m["start_time"], m["end_time"]) for m in person] == [(2, 8), (15, 18)]
    # A zone the spec does not have, and another user's analytics, are 400s.
    wrong = search(client, alice, labels="person", zone=f"{aid}:window")
    assert wrong.status_code == 400 and wrong.json["message"].startswith("zone:")
    assert search(client, bob, labels="person", zone=f"{aid}:door").status_code == 400


# -- thumbnails, made by the tracking step -------------------------------------------------------


def red_square_objects(i: int) -> list[dict]:
    """Frame ``i`` of the 160x120 synthetic video: its red square as a person, scoring
    best in frame 12, and a parked car in the even frames."""
    side = 20
    x = (i * 7) % (160 - side)
    found = [
        {
            "label": "person",
            "class_id": 1,
            "score": 0.95 if i == 12 else 0.8,
            "box": [x, 30.0, x + side, 30.0 + side],
        }
    ]
    if i % 2 == 0:
        found.append({"label": "car", "class_id": 3, "score": 0.7, "box": [100.0, 60.0, 140.0, 100.0]})
    return found


def tracked_job(app, client, headers, video) -> str:
    """A job of ``video`` with its frames stored as the detectors would (the chunk
    plans of the real video), tracked in-process."""
    response = upload(client, headers, video, track="true")
    assert response.status_code == 202, response.json
    job_id = response.json["id"]
    with app.app_context():
        job = db.session.get(Job, job_id)
        index = index_frames(app.extensions["video_storage"].path(job.storage_key))
        plans = plan_chunks(index, 8)
        job.status = JobStatus.PROCESSING
        job.frames_total = len(index)
        job.chunk_count = len(plans)
        job.dispatched = True
        for plan in plans:
            db.session.add(Chunk.from_plan(job_id, plan))
            for frame, timestamp in zip(plan.frames, plan.timestamps, strict=True):
                db.session.add(
                    FrameDetections(
                        job_id=job_id, index=frame, timestamp=timestamp, objects=red_square_objects(frame)
                    )
                )
        db.session.commit()
        track_objects.run(job_id)
    assert client.get(f"/api/jobs/{job_id}", headers=headers).json["status"] == "succeeded"
    return job_id


def test_tracking_makes_a_thumbnail_of_each_tracks_best_box(app, client, auth: Auth, small_video):
    alice = auth.headers("alice")
    job_id = tracked_job(app, client, alice, small_video)
    with app.app_context():
        tracks = db.session.scalars(select(Track).where(Track.job_id == job_id)).all()
        frames = db.session.execute(
            select(FrameDetections.index, FrameDetections.objects).where(FrameDetections.job_id == job_id)
        ).all()
        stored = {
            t.track_id: t
            for t in db.session.scalars(select(TrackThumbnail).where(TrackThumbnail.job_id == job_id))
        }
    assert tracks and sorted(stored) == sorted(t.track_id for t in tracks)
    best: dict[int, tuple[float, int, list[float]]] = {}
    for index, objects in sorted(frames):
        for obj in objects:
            kept = best.get(obj["track_id"])
            if kept is None or obj["score"] > kept[0]:
                best[obj["track_id"]] = (obj["score"], index, obj["box"])
    for track_id, (_, frame, box) in best.items():
        thumbnail = stored[track_id]
        assert thumbnail.frame == frame
        image = Image.open(io.BytesIO(thumbnail.jpeg))
        assert image.format == "JPEG"
        x1, y1, x2, y2 = (int(v) for v in box)
        assert image.size == (x2 - x1, y2 - y1)
        pixels = np.asarray(image.convert("RGB"))[:, :, ::-1].astype(int)
        expected = frame_image(frame, 160, 120)[y1:y2, x1:x2].astype(int)
        assert np.mean(np.abs(pixels - expected)) < 15
    person = [t for t in tracks if t.label == "person"]
    assert any(stored[t.track_id].frame == 12 for t in person)


def test_thumbnails_are_served_to_their_owner_only(app, client, auth: Auth, small_video):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    job_id = tracked_job(app, client, alice, small_video)
    url = f"/api/jobs/{job_id}/tracks/1/thumbnail"

    response = client.get(url, headers=alice)
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(response.data)).format == "JPEG"
    assert client.get(url, headers=bob).status_code == 404
    assert client.get(url).status_code == 401
    assert client.get(f"/api/jobs/{job_id}/tracks/999/thumbnail", headers=alice).status_code == 404
    assert client.get(f"/api/jobs/{'0' * 32}/tracks/1/thumbnail", headers=alice).status_code == 404

    # The search result's URLs carry a media token: they work without a header, for this job only.
    moments = search(client, alice, labels="person,car").json["moments"]
    assert moments and all(m["job_id"] == job_id for m in moments)
    thumbnail_url = next(t["thumbnail_url"] for m in moments for t in m["tracks"] if t["thumbnail_url"])
    assert client.get(thumbnail_url).data == client.get(urlparse(thumbnail_url).path, headers=alice).data
    token = parse_qs(urlparse(thumbnail_url).query)["media_token"][0]
    other = make_job(app, user_id(client, alice), 0, [("person", 0, 1)])
    assert client.get(f"/api/jobs/{other}/tracks/1/thumbnail?media_token={token}").status_code == 401
    assert client.get(f"{url}?media_token={token}x").status_code == 401
    assert search(client, bob, labels="person,car").json["moments"] == []


def test_deleting_a_job_deletes_its_thumbnails(app, client, auth: Auth, small_video):
    alice = auth.headers("alice")
    job_id = tracked_job(app, client, alice, small_video)
    assert client.delete(f"/api/jobs/{job_id}", headers=alice).status_code in (200, 204)
    with app.app_context():
        assert db.session.scalars(select(TrackThumbnail).where(TrackThumbnail.job_id == job_id)).all() == []
