"""The service on real content: vtest.avi (pedestrians crossing a square, MPEG-4
part 2 in AVI) from the shared test data, uploaded as a user would.

The upload is probed and stored; `process_video`, run in process as a worker runs
it, plans its chunks; each chunk, decoded from the stored file as a detector
worker decodes it, holds exactly the frames a straight decode has at those
places.

Then a tracked, sampled job (every other frame of the first 30 s: 150 frames at
5 frames a second) through real workers on the shared SSD MobileNet V2, declared
in a DETECTOR_MODELS file: people on every analysed frame, the same objects and
tracks as `detector predict` on the same frames, and tracks that follow the
walkers. Measured with `predict` first: several person tracks over 50 analysed
frames each, moving a few pixels a frame (13.6 at most), keeping their height
from one analysed frame to the next (within 30 % in 96 % of the steps or more),
some crossing the square (400 to 575 pixels).
"""

from __future__ import annotations

import hashlib
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import av
import pytest
from sqlalchemy import select

from detector.db import db
from detector.models import Chunk, Job
from detector.pipeline.chunks import job_storage
from detector.pipeline.predict import Prediction, predict
from detector.pipeline.tasks import process_video
from detector.video import DecodeStats, decode_frames
from detector.video.selection import FrameSelection
from tests.api.test_jobs import upload
from tests.conftest import Auth, base_config, reconfigure
from tests.pipeline.conftest import assert_same_detections, wait_for_job
from tests.pipeline.test_options_pipeline import Service
from tests.shared_data import PERSON, SharedData, ssd_catalog

FRAMES = 795


def _digest(frame: Any) -> str:
    return hashlib.blake2b(frame.tobytes(), digest_size=16).hexdigest()


def _straight_digests(path: Path, wanted: set[int]) -> dict[int, str]:
    """Digests of the ``wanted`` frames (indices) of one decode from the start."""
    found: dict[int, str] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                found[i] = _digest(frame.to_ndarray(format="bgr24"))
            if len(found) == len(wanted):
                break
    return found


def test_an_uploaded_avi_is_planned_and_its_chunks_decode_exactly(
    app, client, auth: Auth, testdata: SharedData
):
    reconfigure(app, CHUNK_FRAMES=12)
    headers = auth.headers()
    response = upload(client, headers, testdata.video, filename="vtest.avi", frame_stride=5, start=20, end=60)
    assert response.status_code == 202, response.json
    job = response.json
    assert {k: job["video"][k] for k in ("codec", "width", "height", "fps", "frame_count")} == {
        "codec": "msmpeg4",
        "width": 768,
        "height": 576,
        "fps": 10.0,
        "frame_count": FRAMES,
    }
    with app.app_context():
        planned = process_video(job["id"])
        chunks = db.session.scalars(
            select(Chunk).where(Chunk.job_id == job["id"]).order_by(Chunk.index)
        ).all()
        stored = db.session.get(Job, job["id"])
        assert stored is not None
        video = job_storage().path(stored.storage_key)  # where a detector worker reads it
        plans = [c.plan() for c in chunks]
    wanted = list(range(200, 600, 5))  # 20 s to 60 s, every 5th frame
    assert planned["chunks"] == len(plans) >= 6
    assert [f for p in plans for f in p.frames] == wanted
    assert any(p.seek_pts < p.frame_pts[0] for p in plans), "every chunk starts on a keyframe"

    expected = _straight_digests(testdata.video, set(wanted))
    stats = DecodeStats()
    for plan in plans:
        frames = list(decode_frames(video, plan.seek_pts, plan.frame_pts, stats))
        assert [_digest(f) for f in frames] == [expected[i] for i in plan.frames], f"chunk {plan.index}"
    assert stats.delivered == len(wanted)


# The job's options, as the form takes them and as `predict` takes them.
SAMPLED = {"frame_stride": "2", "end": "30", "track": "true"}
SELECTION = FrameSelection(frame_stride=2, end=30)
ANALYSED = 150
THRESHOLD = 0.4


@pytest.fixture(scope="module")
def ssd_config(testdata: SharedData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The service's settings, but for its folders: the SSD on ONNX Runtime as the
    one model, ``ssd``; chunks of 40 analysed frames (four for the job)."""
    folder = tmp_path_factory.mktemp("ssd")
    return {
        "DETECTOR_MODELS": str(ssd_catalog(testdata, folder / "models.toml")),
        "DETECTOR_DEVICE": "cpu",
        "CHUNK_FRAMES": 40,
    }


@pytest.fixture(scope="module")
def baseline(testdata: SharedData, ssd_config: dict[str, Any], tmp_path_factory) -> Prediction:
    """`predict` (what `detector predict` runs) on the job's frames, tracked."""
    config = base_config(tmp_path_factory.mktemp("predict"), **ssd_config)
    return predict(testdata.video, config, THRESHOLD, selection=SELECTION, track=True)


def wait_online(client: Any, headers: dict[str, str], model: str, timeout: float = 240) -> None:
    """Wait until GET /api/models says a detector worker serving ``model`` is online
    (a job sent before then waits for one: its planning looks again a few times)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = client.get("/api/models", headers=headers).json["models"]
        if any(m["name"] == model and m["online"] for m in models):
            return
        time.sleep(1)
    raise AssertionError(f"no detector worker for {model!r} came online in {timeout} s")


def _walks(frames: list[dict[str, Any]]) -> dict[int, list[tuple[int, float, float, float]]]:
    """Each person track's appearances in frame order: frame, box centre x and y, box height."""
    walks: dict[int, list[tuple[int, float, float, float]]] = {}
    for frame in frames:
        for o in frame["objects"]:
            if o["class_id"] == PERSON:
                x1, y1, x2, y2 = o["box"]
                walks.setdefault(o["track_id"], []).append(
                    (frame["frame"], (x1 + x2) / 2, (y1 + y2) / 2, y2 - y1)
                )
    return walks


@pytest.mark.slow
def test_a_tracked_job_on_the_real_model_finds_and_follows_the_walkers(
    testdata: SharedData, ssd_config, baseline, workers_factory, tmp_path
):
    config = base_config(tmp_path, **ssd_config)
    service = Service(config)
    with workers_factory(config, models=("ssd",)) as workers:
        wait_online(service.client, service.headers, "ssd")
        job = service.upload(testdata.video, **SAMPLED, score_threshold=str(THRESHOLD))
        done = wait_for_job(service.client, service.headers, job["id"], timeout=300)
        assert done["status"] == "succeeded", (done, workers.logs())
    assert done["options"]["model"] == "ssd"
    assert done["progress"]["frames_done"] == done["progress"]["frames_total"] == ANALYSED
    assert len(service.chunks(done["id"])) >= 3
    frames = service.frames(done["id"])

    # The same objects and track ids as `detector predict` on the same frames.
    assert_same_detections(frames, baseline.page()["frames"])
    assert [[o["track_id"] for o in f["objects"]] for f in frames] == [
        [o["track_id"] for o in f.detections.to_objects()] for f in baseline.frames
    ]
    tracks = service.pages(f"/api/jobs/{done['id']}/tracks", "tracks", limit=100)
    assert [t["track_id"] for t in tracks] == [t.track_id for t in baseline.tracks or []]

    # People on every analysed frame.
    people = [sum(o["class_id"] == PERSON for o in f["objects"]) for f in frames]
    assert len(frames) == ANALYSED and min(people) >= 2, people

    # A few long person tracks, each one walker: its box moves a few pixels a frame
    # and keeps its size (but where another walker or the lamp post hides part of
    # it for a moment); some walk across the square.
    walks = {t: w for t, w in _walks(frames).items() if len(w) >= 30}
    assert len(walks) >= 4, {t: len(w) for t, w in _walks(frames).items()}
    crossed = 0
    for track, walk in walks.items():
        steps = list(pairwise(walk))
        for (f0, x0, y0, _), (f1, x1, y1, _) in steps:
            assert ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 <= 25 * (f1 - f0), (track, f0, f1)
        same_size = [0.7 <= b[3] / a[3] <= 1.4 for a, b in steps]
        assert sum(same_size) >= 0.9 * len(steps), (track, same_size)
        start, end = walk[0], walk[-1]
        crossed += ((end[1] - start[1]) ** 2 + (end[2] - start[2]) ** 2) ** 0.5 >= 200
    assert crossed >= 2
