"""A live service and one tracked job whose tracks are known: the fixture of the
analytics and search browser tests (tests/web/test_analytics_and_search.py). It is
module scoped, as every live service of the tests is: an app binds the process's
one database handle, so two services cannot serve at once.

The job is the synthetic clip of the other browser tests, 30 frames of 160x96 at
10 fps, uploaded through the API with ``track=true`` and processed by real workers.
Seeded random weights find meaningless boxes (each seen once, so nothing moves
across a line), so once the job has succeeded its stored frames and tracks are
replaced by what a perfect detector and tracker would store for the clip's two
moving shapes (`detector.video.synthetic.frame_image`):

- the red square, 16 px, ``x = 7i mod 144``, ``y`` 24 to 40: a ``car``, moving
  right; track 1 in frames 0-20, track 2 after it jumps back left (frames 21-29);
- the green disc, radius 8, centre ``(159 - x, 3i mod 80 + 8)``: a ``person``,
  moving left; track 3 in frames 0-20, track 4 in frames 21-29.

Each track gets a thumbnail cut from its first frame, as the tracking step makes
them. Analytics and search read only those stored rows, so their answers are known.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest
from flask import Flask
from flask.testing import FlaskClient

from detector.app import create_app
from detector.db.migrate import upgrade
from detector.video.synthetic import frame_image, make_video
from tests.client.conftest import live_server
from tests.conftest import base_config
from tests.pipeline.conftest import Workers, detector_config, seeded_weights, wait_for_job  # noqa: F401 (fixture)

PASSWORD = "correct horse battery"
USERNAME = "dana"
FRAMES, WIDTH, HEIGHT, FPS = 30, 160, 96, 10
SIZE = 16  # the shapes' size in frame_image for this frame size
CAR, PERSON = ("car", 3), ("person", 1)


def shapes(i: int) -> list[dict[str, Any]]:
    """Frame ``i``'s two objects as the API stores them."""
    x = (i * 7) % (WIDTH - SIZE)
    y = (i * 3) % (HEIGHT - SIZE)
    later = i > 20  # the square has jumped back to the left: new tracks from here
    return [
        {
            "label": CAR[0],
            "class_id": CAR[1],
            "score": 0.9,
            "box": [x, 24, x + SIZE, 24 + SIZE],
            "track_id": 2 if later else 1,
        },
        {
            "label": PERSON[0],
            "class_id": PERSON[1],
            "score": 0.8,
            "box": [WIDTH - 1 - x - SIZE / 2, y, WIDTH - 1 - x + SIZE / 2, y + SIZE],
            "track_id": 4 if later else 3,
        },
    ]


# track id -> (label, class id, first frame, last frame)
TRACKS = {1: (*CAR, 0, 20), 2: (*CAR, 21, 29), 3: (*PERSON, 0, 20), 4: (*PERSON, 21, 29)}


@dataclass
class TrackedService:
    url: str
    app: Flask
    job: dict[str, Any]
    headers: dict[str, str]
    username: str = USERNAME

    def client(self) -> FlaskClient:
        return self.app.test_client()


def _store_the_shapes(app: Flask, job: dict[str, Any]) -> None:
    """Replace the job's frames, tracks and thumbnails by the shapes' (see the module)."""
    from sqlalchemy import delete, select

    from detector.db import db
    from detector.models import FrameDetections, Track, TrackThumbnail

    job_id = job["id"]
    with app.app_context():
        rows = db.session.scalars(select(FrameDetections).where(FrameDetections.job_id == job_id)).all()
        assert sorted(row.index for row in rows) == list(range(FRAMES))
        timestamps = {row.index: row.timestamp for row in rows}
        for row in rows:
            row.objects = shapes(row.index)
        db.session.execute(delete(TrackThumbnail).where(TrackThumbnail.job_id == job_id))
        db.session.execute(delete(Track).where(Track.job_id == job_id))
        for track_id, (label, class_id, first, last) in TRACKS.items():
            db.session.add(
                Track(
                    job_id=job_id, track_id=track_id, label=label, class_id=class_id, first_frame=first,
                    last_frame=last, first_timestamp=timestamps[first], last_timestamp=timestamps[last],
                    frames=last - first + 1, mean_score=0.9 if label == CAR[0] else 0.8,
                )
            )  # fmt: skip
            (box,) = [o["box"] for o in shapes(first) if o["track_id"] == track_id]
            x1, y1, x2, y2 = (round(v) for v in box)
            crop = frame_image(first, WIDTH, HEIGHT)[max(0, y1) : y2, max(0, x1) : x2]
            ok, jpeg = cv2.imencode(".jpg", crop)
            assert ok
            db.session.add(TrackThumbnail(job_id=job_id, track_id=track_id, frame=first, jpeg=jpeg.tobytes()))
        db.session.commit()


@pytest.fixture(scope="module", name="tracked_service")
def live_tracked_service(
    tmp_path_factory: pytest.TempPathFactory,
    seeded_weights: Path,  # noqa: F811 (the fixture)
) -> Iterator[TrackedService]:
    """The API on loopback with processor and detector workers, and the shapes' job."""
    tmp = tmp_path_factory.mktemp("web-tracked")
    config = base_config(tmp, **{**detector_config(seeded_weights), "CHUNK_FRAMES": 8})
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    video = make_video(tmp / "clip.mp4", frames=FRAMES, width=WIDTH, height=HEIGHT, fps=FPS, gop=8)
    logs = tmp / "logs"
    logs.mkdir()
    with live_server(app) as url, Workers(config, logs) as workers:
        client = app.test_client()
        client.post("/api/auth/register", json={"username": USERNAME, "password": PASSWORD})
        login = client.post("/api/auth/login", json={"username": USERNAME, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json['access_token']}"}
        with video.open("rb") as body:
            answer = client.post(
                "/api/jobs",
                headers=headers,
                data={"video": (body, "crossing.mp4"), "score_threshold": "0.05", "track": "true"},
                content_type="multipart/form-data",
            )
        assert answer.status_code == 202, answer.json
        job = wait_for_job(client, headers, answer.json["id"])
        assert job["status"] == "succeeded", (job, workers.logs())
        _store_the_shapes(app, job)
        yield TrackedService(url, app, job, headers)
    from detector.db import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()
