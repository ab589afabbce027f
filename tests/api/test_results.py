"""A succeeded job's tracks (GET /api/jobs/<id>/tracks) and exports
(GET /api/jobs/<id>/export?format=...), on jobs finished in-process with stored
frames; and `track_objects` run in-process on a tracked job's stored frames."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from detector.db import db
from detector.detection.labels import PLACEHOLDERS, TORCHVISION_COCO
from detector.models import Chunk, FrameDetections, Job, JobStatus, Track
from detector.pipeline.tasks import track_objects
from tests.api.test_jobs import upload
from tests.conftest import Auth

HOSTILE = "<img src=x onerror=alert(1)>.mp4"
FORMATS = {
    "coco": ("application/json", ".coco.json"),
    "mot": ("text/plain", ".mot.txt"),
    "cvat": ("application/xml", ".cvat.xml"),
    "csv": ("text/csv", ".csv"),
    "jsonl": ("application/x-ndjson", ".jsonl"),
}
LABELS = {i: name for i, name in enumerate(TORCHVISION_COCO) if name not in PLACEHOLDERS}


def objects_of(i: int) -> list[dict]:
    """Frame ``i``'s objects: a person moving right 3 px a frame in every frame but 7, and a
    parked car in the even frames (frame 7 has nothing)."""
    found = []
    if i != 7:
        found.append(
            {"label": "person", "class_id": 1, "score": 0.9, "box": [10.0 + 3 * i, 20.0, 40.0 + 3 * i, 80.0]}
        )
    if i % 2 == 0:
        found.append({"label": "car", "class_id": 3, "score": 0.75, "box": [100.0, 60.0, 140.25, 100.5]})
    return found


def store_frames(app, job_id: str, analysed: list[int], status: JobStatus, fps: float = 10.0) -> None:
    """Store a job's analysed frames (and one chunk's plan of them) as the pipeline would."""
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.status = status
        job.frames_total = len(analysed)
        job.chunk_count = 1
        job.dispatched = True
        job.objects_total = sum(len(objects_of(i)) for i in analysed)
        db.session.add(
            Chunk(
                job_id=job_id,
                index=0,
                start_frame=analysed[0],
                end_frame=analysed[-1] + 1,
                seek_pts=0,
                frame_pts=analysed,
                timestamps=[i / fps for i in analysed],
                frames=analysed,
                frames_done=len(analysed),
            )
        )
        for i in analysed:
            db.session.add(FrameDetections(job_id=job_id, index=i, timestamp=i / fps, objects=objects_of(i)))
        db.session.commit()


def succeeded_job(app, client, headers, video: Path, filename: str = "clip.mp4", **form) -> str:
    """A job of ``video`` that has succeeded with 20 stored frames (tracked when asked)."""
    response = upload(client, headers, video, filename=filename, **form)
    assert response.status_code == 202, response.json
    job_id = response.json["id"]
    tracked = response.json["options"]["track"]
    store_frames(app, job_id, list(range(20)), JobStatus.PROCESSING if tracked else JobStatus.SUCCEEDED)
    if tracked:
        with app.app_context():
            track_objects.run(job_id)
    assert client.get(f"/api/jobs/{job_id}", headers=headers).json["status"] == "succeeded"
    return job_id


def all_frames(client, headers, job_id: str) -> list[dict]:
    page = client.get(f"/api/jobs/{job_id}/detections?limit=1000", headers=headers).json
    assert page["next_start"] is None
    return page["frames"]


# -- track_objects ---------------------------------------------------------------------------------


def _stored(app, job_id: str) -> tuple[list[tuple], list[dict]]:
    with app.app_context():
        frames = db.session.execute(
            select(FrameDetections.index, FrameDetections.objects)
            .where(FrameDetections.job_id == job_id)
            .order_by(FrameDetections.index)
        ).all()
        tracks = [
            {c.name: getattr(t, c.name) for c in Track.__table__.columns}
            for t in db.session.scalars(select(Track).where(Track.job_id == job_id).order_by(Track.track_id))
        ]
    return [tuple(f) for f in frames], tracks


def test_track_objects_gives_every_object_a_track_and_succeeds_the_job(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video, track="true").json["id"]
    store_frames(app, job_id, list(range(20)), JobStatus.PROCESSING)
    with app.app_context():
        result = track_objects.run(job_id)
    frames, tracks = _stored(app, job_id)
    objects = [obj for _, found in frames for obj in found]
    assert len(objects) == sum(len(objects_of(i)) for i in range(20))
    # Every object has a track id; the boxes are as detected.
    assert all(isinstance(obj.get("track_id"), int) and obj["track_id"] >= 1 for obj in objects)
    for index, found in frames:
        assert [{k: v for k, v in o.items() if k != "track_id"} for o in found] == objects_of(index)
    # The steadily moving person is one track, and no track changes label.
    assert len({o["track_id"] for o in objects if o["label"] == "person"}) == 1
    labels_of = defaultdict(set)
    for obj in objects:
        labels_of[obj["track_id"]].add(obj["label"])
    assert all(len(labels) == 1 for labels in labels_of.values())
    # The tracks rows describe exactly the ids in the frames.
    per_track = defaultdict(list)
    for index, found in frames:
        for obj in found:
            per_track[obj["track_id"]].append((index, obj))
    assert [t["track_id"] for t in tracks] == sorted(per_track) == list(range(1, len(per_track) + 1))
    for track in tracks:
        seen = per_track[track["track_id"]]
        assert track["frames"] == len(seen)
        assert (track["first_frame"], track["last_frame"]) == (seen[0][0], seen[-1][0])
        assert (track["first_timestamp"], track["last_timestamp"]) == (seen[0][0] / 10, seen[-1][0] / 10)
        assert track["label"] == seen[0][1]["label"] and track["class_id"] == seen[0][1]["class_id"]
        assert track["mean_score"] == pytest.approx(sum(o["score"] for _, o in seen) / len(seen))
    assert result["tracks"] == len(tracks) and result["frames"] == 20
    job = client.get(f"/api/jobs/{job_id}", headers=headers).json
    assert job["status"] == "succeeded" and job["finished_at"] is not None
    assert job["tracks_total"] == len(tracks)
    assert job["progress"]["frames_tracked"] == 20 and job["progress"]["stage"] == "finished"


def test_tracking_again_gives_the_same_ids_and_tracks(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video, track="true").json["id"]
    store_frames(app, job_id, list(range(20)), JobStatus.PROCESSING)
    with app.app_context():
        track_objects.run(job_id)
    first = _stored(app, job_id)
    # A redelivered message after the job succeeded does nothing.
    with app.app_context():
        assert "skipped" in track_objects.run(job_id)
    assert _stored(app, job_id) == first
    # A redelivery that runs again over frames already carrying ids (the job still
    # processing: its worker died before the end) writes the same ids and replaces the tracks.
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.status, job.tracks_total, job.finished_at = JobStatus.PROCESSING, None, None
        db.session.commit()
        track_objects.run(job_id)
    assert _stored(app, job_id) == first
    assert client.get(f"/api/jobs/{job_id}", headers=headers).json["tracks_total"] == len(first[1])


def test_track_objects_skips_an_untracked_or_queued_job(app, client, auth: Auth, small_video):
    headers = auth.headers()
    untracked = upload(client, headers, small_video).json["id"]
    store_frames(app, untracked, list(range(5)), JobStatus.PROCESSING)
    queued = upload(client, headers, small_video, track="true").json["id"]
    with app.app_context():
        assert "skipped" in track_objects.run(untracked)
        assert "skipped" in track_objects.run(queued)
    frames, tracks = _stored(app, untracked)
    assert tracks == [] and all("track_id" not in o for _, found in frames for o in found)
    assert client.get(f"/api/jobs/{untracked}", headers=headers).json["status"] == "processing"
    assert client.get(f"/api/jobs/{queued}", headers=headers).json["status"] == "queued"


# -- GET /tracks -------------------------------------------------------------------------------------


def _add_tracks(app, job_id: str, count: int) -> list[dict]:
    rows = [
        {
            "job_id": job_id,
            "track_id": n,
            "label": "car" if n % 2 else "person",
            "class_id": 3 if n % 2 else 1,
            "first_frame": n,
            "last_frame": n + 4,
            "first_timestamp": n / 10,
            "last_timestamp": (n + 4) / 10,
            "frames": 5,
            "mean_score": 0.5 + n / 100,
            "best_frame": n + 2,
            "best_score": 0.6 + n / 100,
            "best_box": [n, 10.0, n + 20.0, 50.0],
        }
        for n in range(1, count + 1)
    ]
    with app.app_context():
        db.session.execute(insert(Track), rows)
        db.session.execute(Job.__table__.update().where(Job.id == job_id).values(tracks_total=count))
        db.session.commit()
    return [{k: v for k, v in row.items() if k != "job_id"} for row in rows]


def test_tracks_page_by_track_id(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = upload(client, headers, small_video, track="true").json["id"]
    store_frames(app, job_id, list(range(20)), JobStatus.SUCCEEDED)
    expected = _add_tracks(app, job_id, 7)
    got, start, pages = [], 0, []
    while start is not None:
        response = client.get(f"/api/jobs/{job_id}/tracks?start={start}&limit=3", headers=headers)
        assert response.status_code == 200, response.json
        page = response.json
        assert page["job_id"] == job_id and page["tracks_total"] == 7
        assert page["start"] == start and page["limit"] == 3
        pages.append(page)
        got += page["tracks"]
        start = page["next_start"]
    assert [len(p["tracks"]) for p in pages] == [3, 3, 1]
    assert [p["next_start"] for p in pages] == [4, 7, None]
    assert got == expected
    middle = client.get(f"/api/jobs/{job_id}/tracks?start=5&limit=10", headers=headers).json
    assert [t["track_id"] for t in middle["tracks"]] == [5, 6, 7] and middle["next_start"] is None
    default = client.get(f"/api/jobs/{job_id}/tracks", headers=headers).json
    assert default["start"] == 0 and default["limit"] == 100 and default["tracks"] == expected
    beyond = client.get(f"/api/jobs/{job_id}/tracks?start=8", headers=headers).json
    assert beyond["tracks"] == [] and beyond["next_start"] is None


def test_tracks_of_a_tracked_job_match_its_objects(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video, track="true")
    tracks = client.get(f"/api/jobs/{job_id}/tracks", headers=headers).json
    ids = Counter(o["track_id"] for f in all_frames(client, headers, job_id) for o in f["objects"])
    assert tracks["tracks_total"] == len(tracks["tracks"]) == len(ids)
    assert {t["track_id"]: t["frames"] for t in tracks["tracks"]} == dict(ids)


def test_an_untracked_job_has_no_tracks(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    page = client.get(f"/api/jobs/{job_id}/tracks", headers=headers).json
    assert page["tracks"] == [] and page["tracks_total"] == 0 and page["next_start"] is None
    job = client.get(f"/api/jobs/{job_id}", headers=headers).json
    assert job["tracks_total"] is None and job["tracks_url"] == f"/api/jobs/{job_id}/tracks"


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "start=-1", "limit=abc"])
def test_bad_tracks_parameters_are_400(app, client, auth: Auth, small_video, query):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    response = client.get(f"/api/jobs/{job_id}/tracks?{query}", headers=headers)
    assert response.status_code == 400
    assert query.split("=")[0] in response.json["message"]


def test_tracks_are_409_before_success_404_for_others_401_without_auth(app, client, auth: Auth, small_video):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    job_id = upload(client, alice, small_video, track="true").json["id"]
    early = client.get(f"/api/jobs/{job_id}/tracks", headers=alice)
    assert early.status_code == 409 and "queued" in early.json["message"]
    store_frames(app, job_id, list(range(20)), JobStatus.PROCESSING)
    assert client.get(f"/api/jobs/{job_id}/tracks", headers=alice).status_code == 409
    with app.app_context():
        track_objects.run(job_id)
    assert client.get(f"/api/jobs/{job_id}/tracks", headers=alice).status_code == 200
    theirs = client.get(f"/api/jobs/{job_id}/tracks", headers=bob)
    missing = client.get(f"/api/jobs/{'0' * 32}/tracks", headers=bob)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json["message"].replace(job_id, "X") == missing.json["message"].replace("0" * 32, "X")
    assert client.get(f"/api/jobs/{job_id}/tracks").status_code == 401


# -- GET /export --------------------------------------------------------------------------------------


def _export(client, headers, job_id: str, fmt: str):
    """The answer, read to its end (a streamed body left unread would hold its request context)."""
    response = client.get(f"/api/jobs/{job_id}/export?format={fmt}", headers=headers)
    response.get_data()
    return response


def _filename(response) -> str:
    disposition = response.headers["Content-Disposition"]
    match = re.fullmatch(r'attachment; filename="([^"]*)"', disposition)
    assert match, disposition
    return match.group(1)


@pytest.mark.parametrize(
    "fmt, tracked",
    # mot of an untracked job is a 409: test_mot_of_an_untracked_job_is_409.
    [(fmt, tracked) for fmt in FORMATS for tracked in (False, True) if tracked or fmt != "mot"],
)
def test_each_export_format_is_a_file_download(app, client, auth: Auth, small_video, fmt, tracked):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video, filename="street cam.mp4", track=str(tracked))
    response = client.get(f"/api/jobs/{job_id}/export?format={fmt}", headers=headers)
    assert response.is_streamed  # a body from a generator, not one built whole
    assert response.status_code == 200, response.get_data()[:500]
    media_type, suffix = FORMATS[fmt]
    assert response.mimetype == media_type
    assert _filename(response) == "street_cam" + suffix
    assert response.get_data()


def _objects(client, headers, job_id: str) -> list[tuple[int, dict]]:
    return [(f["frame"], o) for f in all_frames(client, headers, job_id) for o in f["objects"]]


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "tracked"])
def test_coco_loads_in_pycocotools(app, client, auth: Auth, small_video, tmp_path, tracked):
    from pycocotools.coco import COCO

    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video, track=str(tracked))
    path = tmp_path / "export.json"
    path.write_bytes(_export(client, headers, job_id, "coco").data)
    coco = COCO(str(path))
    frames = all_frames(client, headers, job_id)
    objects = _objects(client, headers, job_id)
    assert sorted(coco.getImgIds()) == [f["frame"] + 1 for f in frames]
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == LABELS
    annotations = coco.loadAnns(coco.getAnnIds())
    assert len(annotations) == len(objects)
    for annotation, (frame, obj) in zip(sorted(annotations, key=lambda a: a["id"]), objects, strict=True):
        x1, y1, x2, y2 = obj["box"]
        assert annotation["image_id"] == frame + 1
        assert annotation["category_id"] == obj["class_id"] and annotation["score"] == obj["score"]
        assert annotation["bbox"] == [x1, y1, x2 - x1, y2 - y1]
        assert annotation.get("track_id") == obj.get("track_id")
        assert ("track_id" in annotation) is tracked
    person = coco.getCatIds(catNms=["person"])
    assert len(coco.getAnnIds(catIds=person)) == sum(1 for _, o in objects if o["label"] == "person")
    image = coco.loadImgs([8])[0]  # frame 7, which has no objects
    assert image["frame_index"] == 7 and coco.getAnnIds(imgIds=[8]) == []
    assert (image["width"], image["height"]) == (160, 120)


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "tracked"])
def test_csv_rows_are_the_objects(app, client, auth: Auth, small_video, tracked):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video, track=str(tracked))
    text = _export(client, headers, job_id, "csv").data.decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    objects = _objects(client, headers, job_id)
    assert len(rows) == len(objects)
    for row, (frame, obj) in zip(rows, objects, strict=True):
        assert int(row["frame"]) == frame and float(row["timestamp"]) == frame / 10
        assert row["label"] == obj["label"] and int(row["class_id"]) == obj["class_id"]
        assert float(row["score"]) == obj["score"]
        assert [float(row[k]) for k in ("x1", "y1", "x2", "y2")] == obj["box"]
        assert row["track_id"] == (str(obj["track_id"]) if tracked else "")


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "tracked"])
def test_jsonl_lines_are_the_detections_frames(app, client, auth: Auth, small_video, tracked):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video, track=str(tracked))
    text = _export(client, headers, job_id, "jsonl").data.decode()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == all_frames(client, headers, job_id)
    assert len(lines) == 20


def test_mot_lines_are_the_tracked_objects(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video, track="true")
    lines = _export(client, headers, job_id, "mot").data.decode().splitlines()
    objects = _objects(client, headers, job_id)
    assert len(lines) == len(objects)
    for line, (frame, obj) in zip(lines, objects, strict=True):
        fields = line.split(",")
        assert len(fields) == 10 and fields[7:] == ["-1", "-1", "-1"]
        x1, y1, x2, y2 = obj["box"]
        assert int(fields[0]) == frame + 1 and int(fields[1]) == obj["track_id"]
        assert [float(v) for v in fields[2:6]] == pytest.approx([x1 + 1, y1 + 1, x2 - x1, y2 - y1], abs=1e-3)
        assert float(fields[6]) == pytest.approx(obj["score"], abs=1e-6)


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "tracked"])
def test_cvat_xml_parses_with_a_track_per_object_track(app, client, auth: Auth, small_video, tracked):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video, filename=HOSTILE, track=str(tracked))
    root = ET.fromstring(_export(client, headers, job_id, "cvat").data)
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    assert root.findtext("meta/task/size") == "20"
    assert root.findtext("meta/task/original_size/width") == "160"
    assert [e.text for e in root.iter("name") if e.text in LABELS.values()][:2] == ["person", "bicycle"]
    objects = _objects(client, headers, job_id)
    tracks = root.findall("track")
    shown = [
        (int(b.get("frame")), t.get("label"))
        for t in tracks
        for b in t.findall("box")
        if b.get("outside") == "0"
    ]
    assert sorted(shown) == sorted((frame, o["label"]) for frame, o in objects)
    if tracked:
        assert {int(t.get("id")) for t in tracks} == {o["track_id"] for _, o in objects}
    else:
        assert len(tracks) == len(objects)
        assert [int(t.get("id")) for t in tracks] == list(range(len(objects)))


@pytest.mark.parametrize(
    "name, stem",
    [
        (HOSTILE, "img_src_x_onerror_alert_1"),
        ("evil;filename=x.exe;.mp4", "evil_filename_x.exe"),
        ("tab\there.mp4", "tab_here"),
        ("../../etc/passwd.mp4", "passwd"),
        ("résumé vidéo.mov", "r_sum_vid_o"),
        ("***.mp4", "video"),
    ],
)
def test_the_export_filename_is_safe_for_a_hostile_upload_name(
    app, client, auth: Auth, small_video, name, stem
):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video, filename=name)
    assert client.get(f"/api/jobs/{job_id}", headers=headers).json["filename"] == name
    for fmt in ("coco", "csv", "cvat"):
        response = _export(client, headers, job_id, fmt)
        assert response.status_code == 200
        filename = _filename(response)
        assert filename == stem + FORMATS[fmt][1]
        assert re.fullmatch(r"[A-Za-z0-9._-]+", filename) and not filename.startswith(".")
    # The name in the document itself is the user's text, escaped where the format needs it.
    cvat = ET.fromstring(_export(client, headers, job_id, "cvat").data)
    assert name in [e.text for e in cvat.iter()]
    coco = json.loads(_export(client, headers, job_id, "coco").data)
    assert coco["info"]["video"]["name"] == name


def test_the_export_is_streamed_in_pieces(app, client, auth: Auth, small_video):
    """The app answers with a generator, not a body built in memory: a long job comes in
    many pieces. (The detections endpoint, for contrast, answers one body.)"""
    headers = auth.headers()
    job_id = upload(client, headers, small_video).json["id"]
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.status, job.frames_total, job.objects_total = JobStatus.SUCCEEDED, 3000, 3000
        db.session.execute(
            insert(FrameDetections),
            [
                {"job_id": job_id, "index": i, "timestamp": i / 10, "objects": objects_of(0)[:1]}
                for i in range(3000)
            ],
        )
        db.session.commit()
    url = f"/api/jobs/{job_id}/export?format=jsonl"
    with app.test_request_context(url, headers=headers):
        response = app.full_dispatch_request()
        assert response.is_streamed and not isinstance(response.response, list | tuple)
        pieces = list(response.response)
    assert len(pieces) > 2
    lines = b"".join(pieces).decode().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(3000))
    with app.test_request_context(f"/api/jobs/{job_id}/detections", headers=headers):
        assert not app.full_dispatch_request().is_streamed


def test_mot_of_an_untracked_job_is_409(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    response = _export(client, headers, job_id, "mot")
    assert response.status_code == 409
    assert response.json["error"] == "conflict"
    assert "track" in response.json["message"]
    assert "Content-Disposition" not in response.headers


@pytest.mark.parametrize("fmt", ["xml", "COCO2", "", "json"])
def test_an_unknown_format_is_400_listing_the_formats(app, client, auth: Auth, small_video, fmt):
    headers = auth.headers()
    job_id = succeeded_job(app, client, headers, small_video)
    response = _export(client, headers, job_id, fmt)
    assert response.status_code == 400, response.json
    message = response.json["message"]
    assert "format" in message
    for name in FORMATS:
        assert name in message, message
    missing = client.get(f"/api/jobs/{job_id}/export", headers=headers)
    assert missing.status_code == 400 and "format" in missing.json["message"]


def test_export_is_409_before_success_404_for_others_401_without_auth(app, client, auth: Auth, small_video):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    job_id = upload(client, alice, small_video).json["id"]
    for fmt in FORMATS:
        early = _export(client, alice, job_id, fmt)
        assert early.status_code == 409, fmt
        assert "queued" in early.json["message"]
    store_frames(app, job_id, list(range(20)), JobStatus.SUCCEEDED)
    assert _export(client, alice, job_id, "csv").status_code == 200
    theirs = _export(client, bob, job_id, "csv")
    missing = _export(client, bob, "0" * 32, "csv")
    assert theirs.status_code == missing.status_code == 404
    assert "Content-Disposition" not in theirs.headers
    assert client.get(f"/api/jobs/{job_id}/export?format=csv").status_code == 401
