"""/api/jobs/<id>/analytics on a job finished in-process with stored frames of known
geometry; the analytics task run in-process (detector.pipeline.analytics)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from flask import Flask
from sqlalchemy import func, select

from detector.app import create_app
from detector.db import db
from detector.db.migrate import upgrade
from detector.models import Analytics, FrameDetections, Job, JobStatus, Track
from detector.pipeline.analytics import analyse_tracks, analytics_overlay
from detector.pipeline.rendering import render_job
from tests.api.test_jobs import upload
from tests.conftest import Auth, base_config, postgres_schema

# The small video is 160x120 at 10 fps, 20 frames.
LINE = {"name": "gate", "points": [[0, 60], [160, 60]], "in": "left"}
ZONE = {"name": "bottom", "polygon": [[0, 80], [160, 80], [160, 120], [0, 120]]}
SPEC = {"name": "test", "lines": [LINE], "zones": [ZONE], "interval": 1}


def person(i: int) -> dict:
    """A person whose box's bottom centre is (70, 22 + 5 i): down the picture, 5 px a frame."""
    bottom = 22.0 + 5 * i
    return {"label": "person", "class_id": 1, "score": 0.9, "box": [60.0, bottom - 20, 80.0, bottom]}


def finished_job(app, client, headers, small_video, status: JobStatus = JobStatus.SUCCEEDED) -> str:
    """An untracked job that has ``status`` with 20 stored frames, one person in each."""
    response = upload(client, headers, small_video)
    assert response.status_code == 202, response.json
    job_id = response.json["id"]
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.status = status
        job.frames_total = 20
        for i in range(20):
            db.session.add(FrameDetections(job_id=job_id, index=i, timestamp=i / 10, objects=[person(i)]))
        db.session.commit()
    return job_id


def run_queued(app, job_id: str, analytics_id: str) -> dict:
    with app.app_context():
        return analyse_tracks.run(job_id, analytics_id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One app and database for the module, on each database the service supports (each
    test makes jobs of its own)."""
    folder = tmp_path_factory.mktemp("analytics")
    with postgres_schema() if request.param == "postgresql" else nullcontext() as url:
        config = base_config(folder, **({"DATABASE_URL": url} if url else {}))
        Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        upgrade(config["DATABASE_URL"])
        made = create_app(config)
        yield made
        with made.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def alice(auth: Auth) -> dict[str, str]:
    return auth.headers("alice")


def test_analytics_of_an_untracked_job_track_it_then_count(app, client, alice, small_video):
    job_id = finished_job(app, client, alice, small_video)
    response = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=SPEC)
    assert response.status_code == 202, response.json
    body = response.json
    assert body["status"] == "queued" and "results" not in body
    assert response.headers["Location"].endswith(f"/api/jobs/{job_id}/analytics/{body['id']}")
    assert run_queued(app, job_id, body["id"])["frames"] == 20
    found = client.get(f"/api/jobs/{job_id}/analytics/{body['id']}", headers=alice).json
    assert (found["status"], found["stage"], found["progress"]) == ("succeeded", "done", 1.0)
    results = found["results"]
    line, zone = results["lines"][0], results["zones"][0]
    assert (line["in"], line["out"]) == (0, 1)
    cross = next(e for e in results["events"] if e["kind"] == "line")
    assert (cross["frame"], cross["timestamp"]) == (8, pytest.approx(0.76))
    assert (zone["entries"], zone["exits"]) == (1, 1)
    assert zone["dwell"]["max"] == pytest.approx(1.9 - 1.16)
    # The job was tracked on the way: one track, ids in its frames.
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job.track and job.tracks_total == 1
        assert db.session.scalar(select(Track.frames).where(Track.job_id == job_id)) == 20
        objects = db.session.scalars(select(FrameDetections.objects).where(FrameDetections.job_id == job_id))
        assert {o[0]["track_id"] for o in objects} == {1}
        # What a render naming it draws: the counts as of each frame.
        overlay = analytics_overlay(job_id, body["id"])
        assert overlay is not None and analytics_overlay(job_id, None) is None
        assert overlay(7).text == ("gate: in 0 out 0", "bottom: 0 inside, 0 entered")
        assert overlay(12).text == ("gate: in 0 out 1", "bottom: 1 inside, 1 entered")


def test_the_same_spec_is_the_same_analytics(app, client, alice, small_video):
    job_id = finished_job(app, client, alice, small_video)
    first = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=SPEC)
    reordered = json.loads(json.dumps(SPEC, sort_keys=True))
    again = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=reordered)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["id"] == first.json["id"]
    other = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json={**SPEC, "interval": 5})
    assert other.status_code == 202 and other.json["id"] != first.json["id"]
    listed = client.get(f"/api/jobs/{job_id}/analytics", headers=alice).json["analytics"]
    assert sorted(a["id"] for a in listed) == sorted([first.json["id"], other.json["id"]])
    assert all("results" not in a for a in listed)
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(Analytics.job_id == job_id)) == 2


def test_a_failed_run_starts_again_when_asked_again(app, client, alice, small_video):
    job_id = finished_job(app, client, alice, small_video)
    aid = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=SPEC).json["id"]
    with app.app_context():
        row = db.session.get(Analytics, (job_id, aid))
        row.status, row.error = "failed", "its worker died"
        db.session.commit()
    again = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=SPEC)
    assert again.status_code == 202 and again.json["status"] == "queued" and again.json["error"] is None


BAD_SPECS = [
    ({"zones": [{"name": "z", "polygon": [[10, 10], [100, 100], [100, 10], [10, 100]]}]}, "zones[0].polygon"),
    ({"lines": [{"name": "l", "points": [[5, 5], [5, 5]]}]}, "lines[0].points"),
    ({"lines": [{"name": "l", "points": [[5, 5], [161, 5]]}]}, "lines[0].points[1]"),
    ({"zones": [{"name": "z", "polygon": [[0, 0], [10, 0], [10, 200]]}]}, "zones[0].polygon[2]"),
    ({"interval": "soon"}, "interval"),
]


def test_a_bad_spec_is_400_naming_the_field(app, client, alice, small_video):
    job_id = finished_job(app, client, alice, small_video)
    for spec, field in BAD_SPECS:
        response = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=spec)
        assert response.status_code == 400, field
        assert response.json["error"] == "invalid_input"
        assert response.json["message"].startswith(f"{field}: ")
    not_json = client.post(
        f"/api/jobs/{job_id}/analytics", headers=alice, data="[]", content_type="application/json"
    )
    assert not_json.status_code == 400
    assert client.get(f"/api/jobs/{job_id}/analytics", headers=alice).json["analytics"] == []


def test_another_users_job_and_analytics_are_404(app, client, auth: Auth, alice, small_video):
    job_id = finished_job(app, client, alice, small_video)
    aid = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=SPEC).json["id"]
    run_queued(app, job_id, aid)
    bob = auth.headers("bob")
    base = f"/api/jobs/{job_id}/analytics"
    assert client.post(base, headers=bob, json=SPEC).status_code == 404
    for path in (base, f"{base}/{aid}", f"{base}/{aid}/heatmap", f"{base}/{aid}/export?format=events-csv"):
        assert client.get(path, headers=bob).status_code == 404, path
    assert client.delete(f"{base}/{aid}", headers=bob).status_code == 404
    assert client.get(f"{base}/0123456789abcdef", headers=alice).status_code == 404
    assert client.get(f"{base}/{aid}", headers=alice).status_code == 200


def test_a_job_that_has_not_succeeded_is_409(app, client, alice, small_video):
    job_id = finished_job(app, client, alice, small_video, status=JobStatus.PROCESSING)
    response = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=SPEC)
    assert response.status_code == 409


def test_exports_and_heatmap_read_back(app, client, alice, small_video):
    job_id = finished_job(app, client, alice, small_video)
    aid = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=SPEC).json["id"]
    base = f"/api/jobs/{job_id}/analytics/{aid}"
    assert client.get(f"{base}/export?format=events-csv", headers=alice).status_code == 409
    assert client.get(f"{base}/heatmap", headers=alice).status_code == 409
    run_queued(app, job_id, aid)
    results = client.get(base, headers=alice).json["results"]

    events = client.get(f"{base}/export?format=events-csv", headers=alice)
    assert events.mimetype == "text/csv" and "attachment" in events.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(events.get_data(as_text=True))))
    assert [(r["rule"], r["event"], r["direction"], int(r["frame"])) for r in rows] == [
        (e["rule"], e["event"], e["direction"] or "", e["frame"]) for e in results["events"]
    ]
    lines = (
        client.get(f"{base}/export?format=events-jsonl", headers=alice).get_data(as_text=True).splitlines()
    )
    assert [json.loads(line) for line in lines] == results["events"]
    counts = list(
        csv.DictReader(
            io.StringIO(client.get(f"{base}/export?format=counts-csv", headers=alice).get_data(as_text=True))
        )
    )
    assert {(r["start"], r["rule"], r["label"], r["in"], r["out"]) for r in counts} == {
        ("0.0", "gate", "person", "0", "1"),  # crossed out at 0.76 s
        ("1.0", "bottom", "person", "1", "1"),  # entered at 1.16 s, lost inside at 1.9 s
    }
    assert client.get(f"{base}/export?format=pdf", headers=alice).status_code == 400

    png = client.get(f"{base}/heatmap", headers=alice)
    assert png.mimetype == "image/png"
    image = cv2.imdecode(np.frombuffer(png.data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape == (120, 160, 4)
    alpha = image[:, :, 3]
    assert alpha[60:100, 68:72].mean() > alpha[:, 120:].mean() + 50  # the path is hot, the right edge cold


def test_delete(app, client, alice, small_video):
    job_id = finished_job(app, client, alice, small_video)
    aid = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=SPEC).json["id"]
    assert client.delete(f"/api/jobs/{job_id}/analytics/{aid}", headers=alice).status_code == 204
    assert client.get(f"/api/jobs/{job_id}/analytics/{aid}", headers=alice).status_code == 404
    assert run_queued(app, job_id, aid)["skipped"]  # its message finds nothing to do


def test_a_render_draws_the_analytics(app, client, alice, small_video, tmp_path):
    job_id = finished_job(app, client, alice, small_video)
    aid = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json=SPEC).json["id"]
    render = f"/api/jobs/{job_id}/analytics/{aid}/render"
    assert client.post(render, headers=alice).status_code == 409  # no results yet
    run_queued(app, job_id, aid)
    assert client.post(render, headers=alice).status_code == 202
    assert client.post(render, headers=alice).status_code == 200  # already asked for
    with app.app_context():
        assert render_job.run(job_id)["frames"] == 20
    video = client.get(f"/api/jobs/{job_id}/video/annotated", headers=alice)
    assert video.status_code == 200
    path = tmp_path / "annotated.mp4"
    path.write_bytes(video.data)
    with av.open(str(path)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="bgr24")
    b, g, r = image[59:62, 100:140].reshape(-1, 3).mean(axis=0)  # the line, y = 60
    assert b > 150 and r > 150 and g < 100, (b, g, r)
    # Drawn with another analytics: drawn again.
    other = client.post(f"/api/jobs/{job_id}/analytics", headers=alice, json={**SPEC, "interval": 5}).json[
        "id"
    ]
    run_queued(app, job_id, other)
    assert client.post(f"/api/jobs/{job_id}/analytics/{other}/render", headers=alice).status_code == 202
    with app.app_context():
        drawn = db.session.scalars(
            select(Analytics.id).where(Analytics.job_id == job_id, Analytics.drawn)
        ).all()
    assert drawn == [other]
