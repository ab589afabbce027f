"""Job options on POST /api/jobs (sample_fps, frame_stride, start, end, classes, track):
each bad value is a 400 naming its field and keeps nothing; good ones are echoed as the
job's ``options``; GET /api/labels; options of a source_url job; the detections pages
of a sampled job."""

from __future__ import annotations

import itertools
import math

import pytest

from detector.db import db
from detector.detection.labels import PLACEHOLDERS, TORCHVISION_COCO
from detector.models import FrameDetections, Job, JobStatus
from detector.pipeline.tasks import download_video, process_video
from tests.api.test_jobs import job_count, queued_messages, stored_videos, upload
from tests.conftest import Auth, reconfigure
from tests.integrations.servers import file_route, serve

# The model's labels by class id, as torchvision numbers them: ids 1..90, placeholders skipped.
REAL_LABELS = {i: name for i, name in enumerate(TORCHVISION_COCO) if name not in PLACEHOLDERS}


def _left_nothing(app) -> None:
    assert stored_videos(app) == []
    assert job_count(app) == 0
    assert queued_messages(app) == []


@pytest.mark.parametrize(
    "form, field",
    [
        ({"sample_fps": "0"}, "sample_fps"),
        ({"sample_fps": "-1"}, "sample_fps"),
        ({"sample_fps": "nan"}, "sample_fps"),
        ({"sample_fps": "inf"}, "sample_fps"),
        ({"sample_fps": "abc"}, "sample_fps"),
        ({"sample_fps": "1e9"}, "sample_fps"),
        ({"frame_stride": "0"}, "frame_stride"),
        ({"frame_stride": "1.5"}, "frame_stride"),
        ({"frame_stride": "abc"}, "frame_stride"),
        ({"frame_stride": "-3"}, "frame_stride"),
        ({"frame_stride": "99999999999"}, "frame_stride"),
        ({"frame_stride": "\u00b2"}, "frame_stride"),  # a digit to str.isdigit, not to int()
        ({"start": "-1"}, "start"),
        ({"start": "abc"}, "start"),
        ({"end": "0"}, "end"),
        ({"end": "-2"}, "end"),
        ({"start": "1.5", "end": "1.5"}, "end"),
        ({"start": "1.5", "end": "1"}, "end"),
        ({"classes": ",, ,"}, "classes"),
        ({"track": "maybe"}, "track"),
        ({"track": "2"}, "track"),
    ],
)
def test_a_bad_option_is_400_naming_the_field_and_keeps_nothing(
    app, client, auth: Auth, small_video, form, field
):
    response = upload(client, auth.headers(), small_video, **form)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_input"
    message = response.json["message"]
    assert message.startswith(field), message
    # The message quotes the value sent (except the span's and the empty list's).
    if field != "classes" and not (field == "end" and "start" in form):
        assert repr(form[field]) in message, message
    _left_nothing(app)


def test_sample_fps_and_frame_stride_together_are_refused(app, client, auth: Auth, small_video):
    response = upload(client, auth.headers(), small_video, sample_fps="2", frame_stride="3")
    assert response.status_code == 400
    message = response.json["message"]
    assert "sample_fps" in message and "frame_stride" in message and "not both" in message
    _left_nothing(app)


def test_end_before_start_names_both(app, client, auth: Auth, small_video):
    response = upload(client, auth.headers(), small_video, start="1.5", end="0.5")
    assert response.status_code == 400
    assert "end (0.5 s)" in response.json["message"] and "start (1.5 s)" in response.json["message"]
    _left_nothing(app)


@pytest.mark.parametrize(
    "classes", ["unicorn", "person,unicorn", "0", "12", "N/A", "__background__", "91", "\u00b2", "1\u00b2"]
)
def test_unknown_classes_list_the_valid_labels(app, client, auth: Auth, small_video, classes):
    response = upload(client, auth.headers(), small_video, classes=classes)
    assert response.status_code == 400, response.json
    message = response.json["message"]
    assert message.startswith("classes")
    unknown = [c for c in classes.split(",") if c not in REAL_LABELS.values()]
    for name in unknown:
        assert repr(name) in message, message
    listed = message.split("labels are: ", 1)[1]
    for name in REAL_LABELS.values():
        assert name in listed, name
    assert "N/A" not in listed and "__background__" not in listed
    _left_nothing(app)


@pytest.mark.parametrize(
    "classes, shown",
    [
        ("1,3", ["person", "car"]),
        ("car,person", ["person", "car"]),  # id order, whatever the order asked
        ("Car, PERSON ,dog", ["person", "car", "dog"]),  # any case, spaces around
        ("traffic light,3,Toothbrush", ["car", "traffic light", "toothbrush"]),  # ids and labels mixed
        ("car,3,CAR", ["car"]),  # the same class thrice
        ("90", ["toothbrush"]),
    ],
)
def test_classes_by_id_and_by_label(app, client, auth: Auth, small_video, classes, shown):
    headers = auth.headers()
    response = upload(client, headers, small_video, classes=classes)
    assert response.status_code == 202, response.json
    assert response.json["options"]["classes"] == shown
    # Stored as class ids, in id order; the job's GET shows the same labels.
    with app.app_context():
        stored = db.session.get(Job, response.json["id"]).classes
    assert stored == sorted(stored) and [REAL_LABELS[i] for i in stored] == shown
    assert client.get(f"/api/jobs/{response.json['id']}", headers=headers).json["options"]["classes"] == shown


def test_valid_options_are_echoed_and_stored(app, client, auth: Auth, small_video):
    headers = auth.headers()
    response = upload(
        client,
        headers,
        small_video,
        frame_stride="4",
        start="0.5",
        end="1.8",
        classes="dog,person",
        track="true",
    )
    assert response.status_code == 202, response.json
    expected = {
        "sample_fps": None,
        "frame_stride": 4,
        "start": 0.5,
        "end": 1.8,
        "classes": ["person", "dog"],
        "track": True,
        "model": "default",
    }
    assert response.json["options"] == expected
    job_id = response.json["id"]
    assert client.get(f"/api/jobs/{job_id}", headers=headers).json["options"] == expected
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert (job.frame_stride, job.sample_fps, job.start_time, job.end_time, job.track) == (
            4,
            None,
            0.5,
            1.8,
            True,
        )
        assert job.classes == [1, 18]
    assert len(stored_videos(app)) == 1


@pytest.mark.parametrize(
    "form, key, value",
    [
        ({"sample_fps": "2.5"}, "sample_fps", 2.5),
        ({"sample_fps": "1000"}, "sample_fps", 1000.0),
        ({"frame_stride": "1"}, "frame_stride", 1),
        ({"track": "no"}, "track", False),
        ({"track": "1"}, "track", True),
        ({"track": "YES"}, "track", True),
        ({"start": "0"}, "start", 0.0),
    ],
)
def test_each_option_alone(client, auth: Auth, small_video, form, key, value):
    response = upload(client, auth.headers(), small_video, **form)
    assert response.status_code == 202, response.json
    options = response.json["options"]
    assert options[key] == value
    assert all(v in (None, False) for k, v in options.items() if k not in (key, "model"))
    assert options["model"] == "default"


@pytest.mark.parametrize("start", ["2", "2.0", "5", "10000"])
def test_a_span_starting_after_the_video_is_400_and_keeps_nothing(
    app, client, auth: Auth, small_video, start
):
    # small_video lasts 2 s: no frame starts at or after 2 s.
    response = upload(client, auth.headers(), small_video, start=start)
    assert response.status_code == 400, response.json
    message = response.json["message"]
    assert message.startswith("start") and "end of the video (2 s)" in message
    _left_nothing(app)


def test_a_span_starting_inside_the_video_is_accepted(client, auth: Auth, small_video):
    response = upload(client, auth.headers(), small_video, start="1.9")
    assert response.status_code == 202
    assert response.json["options"]["start"] == 1.9


def test_a_span_after_the_last_frame_but_inside_the_duration_fails_the_job_saying_why(
    app, client, auth: Auth, small_video
):
    """small_video's last frame is at 1.9 s and it lasts 2 s: start=1.95 passes the upload's
    check on the duration, and planning (which sees the frames) fails the job with a message."""
    headers = auth.headers()
    response = upload(client, headers, small_video, start="1.95")
    assert response.status_code == 202
    with app.app_context():
        assert "failed" in process_video.run(response.json["id"])
    job = client.get(f"/api/jobs/{response.json['id']}", headers=headers).json
    assert job["status"] == "failed" and "no frame of the video is in the selection" in job["error"]
    assert "1.9 s" in job["error"] and "start is 1.95 s" in job["error"]


def test_labels_list_the_models_classes(client, auth: Auth, small_video):
    headers = auth.headers()
    assert client.get("/api/labels").status_code == 401
    response = client.get("/api/labels", headers=headers)
    assert response.status_code == 200
    labels = response.json["labels"]
    ids = [entry["class_id"] for entry in labels]
    names = [entry["label"] for entry in labels]
    assert len(labels) == 80 and len(set(names)) == 80
    assert ids == sorted(ids) and ids[0] == 1 and ids[-1] == 90
    assert not PLACEHOLDERS & set(names)
    # The ids torchvision's COCO weights use, from the library itself (no download).
    from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_FPN_Weights

    categories = FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT.meta["categories"]
    assert {e["class_id"]: e["label"] for e in labels} == {
        i: name for i, name in enumerate(categories) if name not in PLACEHOLDERS
    }
    # The model they belong to is the one jobs record.
    job = upload(client, headers, small_video).json
    assert response.json["model"] == job["model"]
    # Every listed label, and every listed id, is accepted as a job's classes.
    accepted = upload(client, headers, small_video, classes=",".join(names))
    assert accepted.status_code == 202 and accepted.json["options"]["classes"] == names
    by_id = upload(client, headers, small_video, classes=",".join(map(str, ids)))
    assert by_id.status_code == 202 and by_id.json["options"]["classes"] == names


def test_labels_take_an_api_key(client, auth: Auth):
    headers = auth.headers()
    key = client.post("/api/keys", headers=headers, json={"name": "script"}).json["key"]
    assert client.get("/api/labels", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/api/labels", headers={"X-API-Key": "dk_live_" + "x" * 43}).status_code == 401


# -- source_url jobs ---------------------------------------------------------------------------


def _submit_url(client, headers, url: str, **form):
    return client.post(
        "/api/jobs", headers=headers, content_type="multipart/form-data", data={"source_url": url, **form}
    )


def test_a_source_url_job_takes_the_options(app, client, auth: Auth):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    headers = auth.headers()
    response = _submit_url(
        client, headers, "http://127.0.0.1:9/v.mp4", sample_fps="2", end="1.5", classes="car", track="on"
    )
    assert response.status_code == 202, response.json
    assert response.json["status"] == "downloading"
    assert response.json["options"] == {
        "sample_fps": 2.0,
        "frame_stride": None,
        "start": None,
        "end": 1.5,
        "classes": ["car"],
        "track": True,
        "model": "default",
    }


@pytest.mark.parametrize(
    "form, field", [({"frame_stride": "0"}, "frame_stride"), ({"classes": "unicorn"}, "classes")]
)
def test_a_source_url_job_with_a_bad_option_is_400_and_not_created(app, client, auth: Auth, form, field):
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    response = _submit_url(client, auth.headers(), "http://127.0.0.1:9/v.mp4", **form)
    assert response.status_code == 400
    assert response.json["message"].startswith(field)
    _left_nothing(app)


def test_a_downloaded_video_keeps_the_options_and_a_span_after_its_end_fails_the_job(
    app, client, auth: Auth, small_video
):
    """A source_url job's video is only known after the download: a start after its end
    cannot be refused at submit, so planning fails the job, saying why."""
    reconfigure(app, ALLOW_PRIVATE_URLS=True)
    headers = auth.headers()
    with serve({"/v.mp4": file_route(small_video.read_bytes())}) as (base, _recorder):
        inside = _submit_url(client, headers, base + "/v.mp4", frame_stride="5", classes="person").json
        after = _submit_url(client, headers, base + "/v.mp4", start="7").json
        with app.app_context():
            for job in (inside, after):
                download_video.run(job["id"])
    inside_now = client.get(f"/api/jobs/{inside['id']}", headers=headers).json
    assert inside_now["status"] == "queued" and inside_now["video"]["duration"] == 2.0
    assert inside_now["options"] == inside["options"]
    assert inside_now["options"]["frame_stride"] == 5 and inside_now["options"]["classes"] == ["person"]
    with app.app_context():
        result = process_video.run(after["id"])
    assert "failed" in result
    failed = client.get(f"/api/jobs/{after['id']}", headers=headers).json
    assert failed["status"] == "failed"
    assert (
        "no frame of the video is in the selection" in failed["error"] and "start is 7 s" in failed["error"]
    )


# -- the detections of a sampled job -----------------------------------------------------------


def _finish_sampled(app, job_id: str, analysed: list[int], fps: float = 10.0) -> None:
    """Store the analysed frames of a sampled job as the pipeline would, and succeed it."""
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.status = JobStatus.SUCCEEDED
        job.frames_total = len(analysed)
        job.objects_total = len(analysed)
        for index in analysed:
            db.session.add(
                FrameDetections(
                    job_id=job_id,
                    index=index,
                    timestamp=index / fps,
                    objects=[
                        {"label": "car", "class_id": 3, "score": 0.8, "box": [index, 1.0, index + 5.0, 9.0]}
                    ],
                )
            )
        db.session.commit()


def _pages(client, headers, job_id: str, start: int, limit: int) -> tuple[list[dict], list[dict]]:
    pages, frames = [], []
    while start is not None:
        response = client.get(f"/api/jobs/{job_id}/detections?start={start}&limit={limit}", headers=headers)
        assert response.status_code == 200, response.json
        page = response.json
        pages.append(page)
        frames += page["frames"]
        start = page["next_start"]
        assert len(pages) < 100
    return pages, frames


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 7, 100])
def test_a_sampled_jobs_detections_page_by_frame_index(app, client, auth: Auth, small_video, limit):
    headers = auth.headers()
    job = upload(client, headers, small_video, frame_stride="5").json
    analysed = list(range(0, 20, 5))  # 0, 5, 10, 15
    _finish_sampled(app, job["id"], analysed)
    pages, frames = _pages(client, headers, job["id"], 0, limit)
    # Every analysed frame once, in order: no page skips or repeats one.
    assert [f["frame"] for f in frames] == analysed
    assert [f["timestamp"] for f in frames] == [i / 10 for i in analysed]
    assert all(f["objects"][0]["box"][0] == f["frame"] for f in frames)
    assert len(pages) == math.ceil(len(analysed) / limit)
    for page, following in itertools.pairwise(pages):
        assert len(page["frames"]) == limit
        # next_start is the index of the next analysed frame, which the next page starts with.
        assert page["next_start"] == following["frames"][0]["frame"] == following["start"]
        assert page["next_start"] in analysed
    assert pages[-1]["next_start"] is None
    assert all(p["frames_total"] == len(analysed) and p["limit"] == limit for p in pages)


def test_a_page_of_a_sampled_job_may_start_between_analysed_frames(app, client, auth: Auth, small_video):
    headers = auth.headers()
    job = upload(client, headers, small_video, frame_stride="5").json
    _finish_sampled(app, job["id"], [0, 5, 10, 15])
    page = client.get(f"/api/jobs/{job['id']}/detections?start=3&limit=2", headers=headers).json
    assert page["start"] == 3
    assert [f["frame"] for f in page["frames"]] == [5, 10] and page["next_start"] == 15
    last = client.get(f"/api/jobs/{job['id']}/detections?start=11&limit=2", headers=headers).json
    assert [f["frame"] for f in last["frames"]] == [15] and last["next_start"] is None
    beyond = client.get(f"/api/jobs/{job['id']}/detections?start=16&limit=2", headers=headers).json
    assert beyond["frames"] == [] and beyond["next_start"] is None
    exact = client.get(f"/api/jobs/{job['id']}/detections?start=10&limit=1", headers=headers).json
    assert [f["frame"] for f in exact["frames"]] == [10] and exact["next_start"] == 15
