"""Jobs with options (sample_fps, frame_stride, start/end, classes, track) through real
workers, on the embedded defaults and on RabbitMQ + Redis + PostgreSQL: frame by
frame, object by object and track by track the same as `detector predict`, on a
variable-frame-rate video cut into several chunks. Then the tracking step's
redelivery and the watchdog's resend of it, in process, and an annotated video
from a real render worker.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import pytest
from sqlalchemy import select

from detector.app import create_app
from detector.bench.stored import stored_job
from detector.db import db
from detector.db.migrate import upgrade
from detector.detection import AnalysedFrame, Detections
from detector.models import Chunk, ChunkStatus, FrameDetections, Job, JobStatus, Track, utcnow
from detector.pipeline import tracking as tracking_module
from detector.pipeline.predict import Prediction, predict, track_results
from detector.video import index_frames
from detector.video.selection import FrameSelection
from detector.video.synthetic import make_video
from tests.conftest import RABBITMQ_URL, REDIS_URL, Auth, base_config, postgres_schema, require_server
from tests.pipeline.conftest import assert_same_detections, detector_config, wait_for_job

THRESHOLD = 0.3
# Chunks of a few analysed frames, so that every job here has several.
CHUNK_FRAMES = 6
VIDEO_FRAMES = 80


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 frames, 320x240, B-frames, a keyframe every 12 frames, at a variable rate:
    1 s at 25 fps, 2.5 s at 10 fps, then steps of 33, 67 or 150 ms (about 6 s in all)."""
    rng = random.Random(7)
    steps = [40] * 25 + [100] * 25 + [rng.choice([33, 67, 150]) for _ in range(VIDEO_FRAMES - 51)]
    pts = [0]
    for step in steps:
        pts.append(pts[-1] + step)
    path = tmp_path_factory.mktemp("options") / "vfr.mp4"
    # fps=10: pts are in 1/1000 s.
    return make_video(path, frames=VIDEO_FRAMES, width=320, height=240, fps=10, gop=12, pts=pts)


def exact_config(weights: Path) -> dict[str, Any]:
    """The test model's settings with batches of one frame.

    Batched inference can differ in the last digits with the batch's make-up, and a
    sampled job's chunks (about CHUNK_FRAMES analysed frames, boundaries moved to
    keyframes) are not multiples of any batch: with DETECTOR_BATCH_SIZE=1 every
    frame is inferred alone, in the workers as in `predict`, so the objects (and so
    the tracks) are the same, not merely close.
    """
    return {**detector_config(weights), "DETECTOR_BATCH_SIZE": 1, "CHUNK_FRAMES": CHUNK_FRAMES}


def _objects(frame: AnalysedFrame) -> list[dict[str, Any]]:
    return frame.detections.to_objects()


class Baselines:
    """`predict` (what `detector predict` runs) on the video, per set of options, once."""

    def __init__(self, video: Path, config: dict[str, Any]) -> None:
        self.video = video
        self.config = config
        self.found: dict[tuple[Any, ...], Prediction] = {}

    def get(
        self, selection: FrameSelection, classes: tuple[int, ...] | None = None, track: bool = False
    ) -> Prediction:
        key = (selection, classes, track)
        if key not in self.found:
            self.found[key] = predict(
                self.video, self.config, THRESHOLD, selection=selection, classes=classes, track=track
            )
        return self.found[key]


@pytest.fixture(scope="module")
def baselines(seeded_weights: Path, vfr_video: Path) -> Baselines:
    return Baselines(vfr_video, exact_config(seeded_weights))


# The options each job is uploaded with, and the same as `predict` takes them.
SAMPLED = FrameSelection(sample_fps=4, start=0.5, end=5.5)
STRIDED = FrameSelection(frame_stride=4)
TRACKED = FrameSelection(sample_fps=5)


def _classes_to_keep(baselines: Baselines) -> tuple[dict[int, str], list[int]]:
    """The labels of the classes in the sampled frames with these weights, and two of
    them to keep, while others occur too: the filter then keeps some objects and drops
    some."""
    every = baselines.get(SAMPLED)
    # Not "N/A", a placeholder of the COCO class list that random weights report and
    # `classes` cannot name.
    counts = Counter(
        (o["class_id"], o["label"]) for f in every.frames for o in _objects(f) if o["label"] != "N/A"
    )
    assert len(counts) >= 3, f"the seeded weights find too few classes to filter: {counts}"
    kept = [class_id for (class_id, _label), _n in counts.most_common(2)]
    return {class_id: label for class_id, label in counts}, sorted(kept)


@pytest.fixture(params=["embedded", "servers"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, seeded_weights: Path) -> Iterator[dict[str, Any]]:
    """Settings for the API and the workers: the embedded defaults (SQLite, the
    filesystem broker, the file result store), or RabbitMQ + Redis + PostgreSQL."""
    settings = exact_config(seeded_weights)
    if request.param == "embedded":
        yield base_config(tmp_path, **settings)
        return
    require_server(RABBITMQ_URL)
    require_server(REDIS_URL)
    with postgres_schema() as url:
        yield base_config(
            tmp_path,
            DATABASE_URL=url,
            CELERY_BROKER_URL=RABBITMQ_URL,
            CELERY_RESULT_BACKEND=REDIS_URL,
            **settings,
        )


class Service:
    """The API (a test client) on ``config``, and what a test asks of it."""

    def __init__(self, config: dict[str, Any]) -> None:
        Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        upgrade(config["DATABASE_URL"])
        self.app = create_app(config)
        if config["CELERY_BROKER_URL"] != "filesystem://":
            self.app.extensions["celery"].control.purge()  # an earlier run's leftovers
        self.client = self.app.test_client()
        self.headers = Auth(self.client).headers()

    def upload(self, path: Path, **fields: str) -> dict[str, Any]:
        response = self.client.post(
            "/api/jobs",
            headers=self.headers,
            content_type="multipart/form-data",
            data={
                "video": (io.BytesIO(path.read_bytes()), path.name),
                "score_threshold": str(THRESHOLD),
                **fields,
            },
        )
        assert response.status_code == 202, response.json
        return response.json

    def run(self, workers: Any, path: Path, **fields: str) -> dict[str, Any]:
        job = self.upload(path, **fields)
        done = wait_for_job(self.client, self.headers, job["id"], timeout=180)
        assert done["status"] == "succeeded", (done, workers.logs())
        return done

    def pages(self, url: str, key: str, limit: int) -> list[dict[str, Any]]:
        """Every item of a paged endpoint, following next_start."""
        items: list[dict[str, Any]] = []
        start: int | None = 0
        while start is not None:
            response = self.client.get(f"{url}?start={start}&limit={limit}", headers=self.headers)
            assert response.status_code == 200, response.json
            items += response.json[key]
            assert len(response.json[key]) <= limit
            start = response.json["next_start"]
        return items

    def frames(self, job_id: str) -> list[dict[str, Any]]:
        return self.pages(f"/api/jobs/{job_id}/detections", "frames", limit=7)

    def chunks(self, job_id: str) -> list[Chunk]:
        with self.app.app_context():
            chunks = list(
                db.session.scalars(select(Chunk).where(Chunk.job_id == job_id).order_by(Chunk.index))
            )
            db.session.expunge_all()
            return chunks


def _check_job(service: Service, done: dict[str, Any], expected: Prediction) -> list[dict[str, Any]]:
    """The job's frames are ``expected``'s, frame by frame, in several chunks; its
    counts say so too. Returns its frames."""
    analysed = len(expected.frames)
    assert 0 < analysed < VIDEO_FRAMES
    assert done["video"]["frame_count"] == VIDEO_FRAMES == expected.video_frames
    assert done["progress"]["frames_total"] == analysed
    assert done["progress"]["frames_done"] == analysed
    assert done["progress"]["percent"] == 100.0
    assert done["progress"]["stage"] == "finished"
    frames = service.frames(done["id"])
    page = expected.page()
    assert_same_detections(frames, page["frames"])
    assert done["objects_total"] == sum(len(f["objects"]) for f in frames)
    assert done["objects_total"] > 0, "a test with no detections proves nothing"
    # The frames came in several chunks, each holding its part of the frames.
    chunks = service.chunks(done["id"])
    assert len(chunks) >= 3
    assert all(c.status is ChunkStatus.DONE for c in chunks)
    assert [i for c in chunks for i in c.plan().frames] == [f["frame"] for f in frames]
    return frames


@pytest.mark.slow
def test_sampled_span_of_some_classes_equals_predict(backend, workers_factory, vfr_video, baselines):
    """sample_fps + start/end + classes (one by label, one by class id)."""
    labels, kept = _classes_to_keep(baselines)
    expected = baselines.get(SAMPLED, tuple(kept))
    every = baselines.get(SAMPLED)
    # The class filter drops exactly the other classes' objects of the same frames.
    assert [f.frame for f in expected.frames] == [f.frame for f in every.frames]
    for filtered, whole in zip(expected.frames, every.frames, strict=True):
        assert _objects(filtered) == [o for o in _objects(whole) if o["class_id"] in kept]
    assert sum(map(len, map(_objects, every.frames))) > sum(map(len, map(_objects, expected.frames)))
    # Only the span's frames, chosen on the video's real (variable) timestamps.
    index = index_frames(vfr_video)
    timestamps = [index.timestamp(p) for p in index.pts]
    assert [f.frame for f in every.frames] == SAMPLED.select(timestamps)
    assert all(0.5 <= f.timestamp < 5.5 for f in every.frames)

    service = Service(backend)
    with workers_factory(backend) as workers:
        done = service.run(
            workers,
            vfr_video,
            sample_fps="4",
            start="0.5",
            end="5.5",
            classes=f"{labels[kept[0]]},{kept[1]}",
        )
    frames = _check_job(service, done, expected)
    assert all(o["class_id"] in kept for f in frames for o in f["objects"])
    assert done["options"] == {
        "sample_fps": 4.0,
        "frame_stride": None,
        "start": 0.5,
        "end": 5.5,
        "classes": [labels[c] for c in kept],
        "track": False,
        "model": "default",
    }
    assert done["tracks_total"] is None
    assert done["progress"]["frames_tracked"] is None


@pytest.mark.slow
def test_frame_stride_equals_predict(backend, workers_factory, vfr_video, baselines):
    expected = baselines.get(STRIDED)
    assert [f.frame for f in expected.frames] == list(range(0, VIDEO_FRAMES, 4))
    service = Service(backend)
    with workers_factory(backend) as workers:
        done = service.run(workers, vfr_video, frame_stride="4")
    _check_job(service, done, expected)
    assert done["options"]["frame_stride"] == 4
    assert done["options"]["sample_fps"] is None


@pytest.mark.slow
def test_tracked_sampled_job_equals_predict_track_by_track(backend, workers_factory, vfr_video, baselines):
    expected = baselines.get(TRACKED, track=True)
    assert expected.tracks
    service = Service(backend)
    with workers_factory(backend) as workers:
        done = service.run(workers, vfr_video, sample_fps="5", track="true")
    frames = _check_job(service, done, expected)
    # Every object has a track id, and they are predict's, object by object.
    ids = [[o["track_id"] for o in f["objects"]] for f in frames]
    assert all(type(i) is int and i >= 1 for frame in ids for i in frame)
    assert ids == [[o["track_id"] for o in _objects(f)] for f in expected.frames]
    assert len({i for frame in ids for i in frame}) == len(expected.tracks)
    # The tracks, every page of them, are predict's tracks.
    tracks = service.pages(f"/api/jobs/{done['id']}/tracks", "tracks", limit=7)
    assert len(tracks) > 7  # several pages
    baseline_tracks = [t.as_dict() for t in expected.tracks]
    assert [t["track_id"] for t in tracks] == [t["track_id"] for t in baseline_tracks]
    for got, want in zip(tracks, baseline_tracks, strict=True):
        assert {k: v for k, v in got.items() if k != "mean_score"} == {
            k: v for k, v in want.items() if k != "mean_score"
        }
        assert got["mean_score"] == pytest.approx(want["mean_score"], abs=1e-4)
    assert done["tracks_total"] == len(expected.tracks)
    assert done["progress"]["frames_tracked"] == len(expected.frames)
    assert done["options"] == {
        "sample_fps": 5.0,
        "frame_stride": None,
        "start": None,
        "end": None,
        "classes": None,
        "track": True,
        "model": "default",
    }


@pytest.mark.slow
def test_render_worker_makes_a_playable_annotated_video(tmp_path, seeded_weights, workers_factory, vfr_video):
    """A sampled job's annotated video through a real `render` worker (embedded defaults):
    H.264, every frame of the video, at the video's own timestamps."""
    config = base_config(tmp_path, **exact_config(seeded_weights))
    service = Service(config)
    with workers_factory(config, render=True) as workers:
        done = service.run(workers, vfr_video, frame_stride="4")
        job_id = done["id"]
        assert done["render"] is None
        missing = service.client.get(f"/api/jobs/{job_id}/video/annotated", headers=service.headers)
        assert missing.status_code == 404
        started = service.client.post(f"/api/jobs/{job_id}/render", headers=service.headers)
        assert started.status_code == 202, started.json
        assert started.json["status"] in ("queued", "rendering", "succeeded")
        deadline = time.monotonic() + 120
        render = started.json
        while render["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, (render, workers.logs())
            time.sleep(0.5)
            render = service.client.get(f"/api/jobs/{job_id}", headers=service.headers).json["render"]
        assert render["status"] == "succeeded", (render, workers.logs())
    assert render["percent"] == 100.0 and render["error"] is None
    assert render["frames_done"] == VIDEO_FRAMES
    again = service.client.post(f"/api/jobs/{job_id}/render", headers=service.headers)
    assert again.status_code == 200 and again.json["status"] == "succeeded"
    response = service.client.get(render["url"], headers=service.headers)
    assert response.status_code == 200
    assert response.mimetype == "video/mp4"
    annotated = tmp_path / "annotated.mp4"
    annotated.write_bytes(response.data)
    with av.open(str(annotated)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
        decoded = sum(1 for frame in container.decode(stream) if frame.pts is not None)
    assert decoded == VIDEO_FRAMES
    source, out = index_frames(vfr_video), index_frames(annotated)
    assert [out.timestamp(p) for p in out.pts] == pytest.approx(
        [source.timestamp(p) for p in source.pts], abs=1e-3
    )


# --- The tracking step in process: redelivered, and resent by the watchdog ---


def _moving_objects(frame: int) -> list[dict[str, Any]]:
    """Three objects gliding across the frame, one of them a second class; one leaves at
    frame 12. Scores vary a little so that nothing ties."""
    objects = []
    for k, (label, class_id, x0, y0) in enumerate(
        [("person", 1, 10, 20), ("person", 1, 150, 120), ("car", 3, 60, 60)]
    ):
        if k == 1 and frame >= 12:
            continue
        x, y = x0 + 4 * frame, y0 + 2 * frame
        objects.append(
            {
                "label": label,
                "class_id": class_id,
                "score": round(0.9 - 0.01 * k - 0.001 * (frame % 5), 6),
                "box": [float(x), float(y), float(x + 40), float(y + 60)],
            }
        )
    return objects


def _tracked_job(frames: list[int], chunk_frames: int, age: timedelta = timedelta(0)) -> str:
    """A tracked job, processing, whose chunks are all done and whose frames are stored."""
    session = db.session
    then = utcnow() - age
    job = stored_job(
        session,
        [(f, f / 25, _moving_objects(f)) for f in frames],
        status=JobStatus.PROCESSING,
        owner="t",
        sample_fps=5.0,
        track=True,
        created_at=then,
        started_at=then,
        frame_count=frames[-1] + 1,
        frames_total=len(frames),
    )
    parts = [frames[i : i + chunk_frames] for i in range(0, len(frames), chunk_frames)]
    job.chunk_count = len(parts)
    for i, part in enumerate(parts):
        session.add(
            Chunk(
                job_id=job.id,
                index=i,
                start_frame=part[0],
                end_frame=part[-1] + 1,
                seek_pts=0,
                frame_pts=[f * 10 for f in part],
                timestamps=[f / 25 for f in part],
                frames=part,
                status=ChunkStatus.DONE,
                frames_done=len(part),
                objects=sum(len(_moving_objects(f)) for f in part),
                updated_at=then,
            )
        )
    session.commit()
    return job.id


def _sent_tasks(app) -> list[str]:
    folder = Path(app.config["DATA_DIR"]) / "broker" / "queue"
    return [json.loads(p.read_text())["headers"]["task"] for p in sorted(folder.glob("*.msg"))]


def _stored(job_id: str) -> tuple[list[list[int | None]], list[dict[str, Any]]]:
    """The track id of every stored object, frame by frame, and the stored tracks."""
    db.session.rollback()
    rows = db.session.scalars(
        select(FrameDetections).where(FrameDetections.job_id == job_id).order_by(FrameDetections.index)
    ).all()
    ids = [[o.get("track_id") for o in row.objects] for row in rows]
    tracks = db.session.scalars(select(Track).where(Track.job_id == job_id).order_by(Track.track_id)).all()
    summaries = [
        {c.name: getattr(t, c.name) for c in Track.__table__.columns if c.name != "job_id"} for t in tracks
    ]
    db.session.rollback()
    return ids, summaries


def _set_job(job_id: str, **values: Any) -> None:
    """Change the job's row as another process would (not through the test's session)."""
    with db.engine.begin() as other_process:
        other_process.execute(Job.__table__.update().where(Job.id == job_id).values(**values))


def test_a_redelivered_tracking_step_writes_the_same_ids_and_one_set_of_tracks(app, monkeypatch):
    """merge_chunks hands a tracked job to track_objects once, however often it runs; a
    worker dies after tracking some frames; once its lease has run out the step is
    merged and tracked again, and tracked once more by a late duplicate: the same ids
    as predict's tracker every time, and one set of tracks."""
    from detector.pipeline.limits import Deadline
    from detector.pipeline.merging import merge_chunks
    from detector.pipeline.tracking import TRACKING_LEASE, track_objects

    frames = list(range(0, 60, 2))  # every other frame, as a sampled job stores them
    with app.app_context():
        job_id = _tracked_job(frames, chunk_frames=8)
        merged = merge_chunks(None, job_id)
        assert merged["tracking"] is True
        # The chord's callback and the last chunk both merge: tracking starts once.
        assert "skipped" in merge_chunks(None, job_id)
        assert _sent_tasks(app) == ["detector.track_objects"]
        job = db.session.get(Job, job_id)
        assert job.status is JobStatus.PROCESSING and job.frames_tracked == 0
        db.session.rollback()

        # The first delivery dies after its first batch of frames is written back
        # (at the time-limit check that follows each batch's commit).
        def worker_dies(*args: object) -> None:
            raise SystemExit("worker killed")

        with monkeypatch.context() as patch:
            patch.setattr(tracking_module, "BATCH_FRAMES", 7)
            patch.setattr(Deadline, "check", worker_dies)
            with pytest.raises(SystemExit):
                track_objects(job_id)
        db.session.rollback()
        partly, no_tracks = _stored(job_id)
        assert all(i is not None for frame in partly[:7] for i in frame)
        assert all(i is None for frame in partly[7:] for i in frame)
        assert no_tracks == []
        job = db.session.get(Job, job_id)
        assert job.status is JobStatus.PROCESSING and job.frames_tracked == 7
        db.session.rollback()
        assert "skipped" in merge_chunks(None, job_id)  # within its lease it may still be alive

        # Silent past its lease: merged again (the watchdog), tracked again, the job succeeds.
        _set_job(job_id, tracked_at=utcnow() - TRACKING_LEASE - timedelta(seconds=1))
        again = merge_chunks(None, job_id)
        assert again["tracking"] is True, again
        assert _sent_tasks(app) == ["detector.track_objects"] * 2
        assert track_objects(job_id)["tracks"] > 0
        first_ids, first_tracks = _stored(job_id)
        job = db.session.get(Job, job_id)
        assert job.status is JobStatus.SUCCEEDED
        assert job.tracks_total == len(first_tracks)
        assert job.frames_tracked == len(frames)
        db.session.rollback()
        # A late duplicate finds the job finished and changes nothing.
        assert "skipped" in track_objects(job_id)
        assert "skipped" in merge_chunks(None, job_id)
        assert _stored(job_id) == (first_ids, first_tracks)
        # Even one that finds it processing again writes the same ids and the same tracks, once.
        _set_job(job_id, status=JobStatus.PROCESSING)
        assert track_objects(job_id)["tracks"] == len(first_tracks)
        assert _stored(job_id) == (first_ids, first_tracks)
        assert db.session.query(Track).filter_by(job_id=job_id).count() == len(first_tracks)

    # They are the ids `detector predict --track` gives the same frames.
    tracked, summaries, _seconds = track_results(
        [AnalysedFrame(f, f / 25, Detections.from_objects(_moving_objects(f))) for f in frames]
    )
    assert first_ids == [[o["track_id"] for o in _objects(f)] for f in tracked]
    assert first_tracks == [s.as_dict() for s in summaries]
    # Three objects followed the whole way (one leaves): three tracks, not one per box.
    assert len(first_tracks) == 3
    assert sorted(t["frames"] for t in first_tracks) == [6, 30, 30]


def test_the_watchdog_resends_a_lost_tracking_step(app):
    """A tracked job whose chunks are all done and which has not moved for the stall
    time (its track_objects message or worker was lost) is merged again, which sends
    its tracking step again; one that is tracking right now is left alone."""
    from detector.pipeline.merging import merge_chunks
    from detector.pipeline.tasks import watchdog
    from detector.pipeline.tracking import track_objects

    with app.app_context():
        lost = _tracked_job(list(range(0, 40, 4)), chunk_frames=4, age=timedelta(minutes=10))
        moving = _tracked_job(list(range(0, 40, 4)), chunk_frames=4, age=timedelta(minutes=10))
        # `lost` was merged 10 minutes ago, and its track_objects never ran;
        # `moving` is tracking: it reported progress a moment ago.
        _set_job(lost, frames_tracked=0, tracked_at=utcnow() - timedelta(minutes=10))
        _set_job(moving, frames_tracked=3, tracked_at=utcnow() - timedelta(seconds=5))
        counts = watchdog()
        assert counts["resumed"] == 1 and counts["failed"] == 0
        assert _sent_tasks(app) == ["detector.merge_chunks"]
        assert db.session.get(Job, moving).status is JobStatus.PROCESSING
        db.session.rollback()

        # The resent merge hands the job to tracking, which ends it; the moving one's
        # merge would leave it to the step under way.
        assert merge_chunks(None, lost)["tracking"] is True
        assert "skipped" in merge_chunks(None, moving)
        assert sorted(_sent_tasks(app)) == ["detector.merge_chunks", "detector.track_objects"]
        assert track_objects(lost)["frames"] == 10
        job = db.session.get(Job, lost)
        assert job.status is JobStatus.SUCCEEDED and job.tracks_total
        db.session.rollback()
        # Finished, it is no longer the watchdog's business.
        assert watchdog()["resumed"] == 0
