"""The watchdog, called directly: it resumes, resends or fails jobs that stopped moving."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

from detector.bench.stored import stored_job
from detector.db import db
from detector.models import Chunk, ChunkStatus, FrameDetections, Job, JobStatus, ModelActivity, utcnow
from detector.pipeline.tasks import watchdog
from tests.conftest import reconfigure


def _sent_tasks(app) -> list[str]:
    folder = Path(app.config["DATA_DIR"]) / "broker" / "queue"
    return [json.loads(p.read_text())["headers"]["task"] for p in sorted(folder.glob("*.msg"))]


def _job(status: JobStatus, age: timedelta, chunks: list[ChunkStatus], dispatched: bool = True) -> str:
    session = db.session
    then = utcnow() - age
    job = stored_job(
        session,
        [(i, float(i), []) for i, state in enumerate(chunks) if state is ChunkStatus.DONE],
        status=status,
        owner="w",
        created_at=then,
        started_at=then,
        frames_total=len(chunks),
        chunk_count=len(chunks),
        dispatched=dispatched,
    )
    for i, state in enumerate(chunks):
        session.add(
            Chunk(
                job_id=job.id,
                index=i,
                start_frame=i,
                end_frame=i + 1,
                seek_pts=0,
                frame_pts=[i],
                timestamps=[float(i)],
                status=state,
                updated_at=then,
            )
        )
    session.commit()
    return job.id


def _job_counts(counts: dict[str, int]) -> dict[str, int]:
    """What the watchdog did to jobs (it also counts uploads, renders and retention)."""
    return {name: counts[name] for name in ("resent", "resumed", "failed")}


def test_all_chunks_done_but_never_merged_is_merged(app):
    with app.app_context():
        _job(JobStatus.PROCESSING, timedelta(minutes=5), [ChunkStatus.DONE, ChunkStatus.DONE])
        assert _job_counts(watchdog()) == {"resent": 0, "resumed": 1, "failed": 0}
        assert _sent_tasks(app) == ["detector.merge_chunks"]


def test_stalled_job_is_failed_naming_its_chunks(app):
    reconfigure(app, JOB_STALL_SECONDS=60)
    with app.app_context():
        job_id = _job(JobStatus.PROCESSING, timedelta(minutes=5), [ChunkStatus.DONE, ChunkStatus.PENDING])
        assert watchdog()["failed"] == 1
        job = db.session.get(Job, job_id)
        assert job.status is JobStatus.FAILED
        assert "no detector serving model 'default' has made progress" in job.error
        assert "chunks [1] never finished" in job.error
        assert db.session.query(FrameDetections).filter_by(job_id=job_id).count() == 0


def test_moving_jobs_are_left_alone(app):
    reconfigure(app, JOB_STALL_SECONDS=600)
    with app.app_context():
        job_id = _job(JobStatus.PROCESSING, timedelta(minutes=1), [ChunkStatus.RUNNING])
        assert _job_counts(watchdog()) == {"resent": 0, "resumed": 0, "failed": 0}
        assert db.session.get(Job, job_id).status is JobStatus.PROCESSING


def test_queued_job_whose_message_was_lost_is_sent_again(app):
    reconfigure(app, JOB_STALL_SECONDS=60)
    with app.app_context():
        job_id = _job(JobStatus.QUEUED, timedelta(minutes=5), [], dispatched=False)
        assert watchdog()["resent"] == 1
        assert _sent_tasks(app) == ["detector.process_video"]
        assert db.session.get(Job, job_id).status is JobStatus.QUEUED


def test_abandoned_uploads_are_swept_and_fresh_ones_kept(app):
    """An API process killed mid-upload leaves its file in the incoming area."""
    storage = app.extensions["video_storage"]
    abandoned, in_progress = storage.new_upload(), storage.new_upload()
    for upload in (abandoned, in_progress):
        upload.write(b"part of a video")
        upload.close()
    hours_ago = time.time() - 2 * 3600
    os.utime(abandoned.name, (hours_ago, hours_ago))
    with app.app_context():
        assert watchdog()["uploads_swept"] == 1
    assert not Path(abandoned.name).exists()
    assert Path(in_progress.name).exists()


def test_a_resent_job_that_starts_at_once_is_not_sent_twice(app, monkeypatch):
    """The resent process_video can start (in another worker process) before the
    watchdog has finished its pass: the job it then sees processing is the one
    it just sent, not a stalled one to send again."""
    import detector.pipeline.watchdog as watchdog_module

    reconfigure(app, JOB_STALL_SECONDS=60)
    sent: list[str] = []

    def send_and_start_at_once(job_id: str) -> None:
        sent.append(job_id)
        with db.engine.begin() as other_process:  # not the watchdog's session
            other_process.execute(
                Job.__table__.update()
                .where(Job.id == job_id)
                .values(status=JobStatus.PROCESSING, started_at=utcnow())
            )

    monkeypatch.setattr(watchdog_module, "send_process_video", send_and_start_at_once)
    with app.app_context():
        job_id = _job(JobStatus.QUEUED, timedelta(minutes=5), [], dispatched=False)
        db.session.remove()
        assert watchdog()["resent"] == 1
        assert sent == [job_id]


def _model_progress(app, age: timedelta) -> None:
    """A detector of the default model reported progress ``age`` ago (on another job)."""
    from detector.pipeline.activity import record_progress

    with db.transaction() as session:
        record_progress(session, "default")
        session.execute(ModelActivity.__table__.update().values(progress_at=utcnow() - age))


def test_a_job_waiting_behind_other_jobs_on_a_moving_queue_is_left_alone(app):
    """Its chunks have not moved for longer than the stall time, but its model's
    detectors are working (on another job's chunks) and its messages wait in the queue."""
    reconfigure(app, JOB_STALL_SECONDS=60)
    with app.app_context():
        job_id = _job(JobStatus.PROCESSING, timedelta(minutes=30), [ChunkStatus.PENDING, ChunkStatus.PENDING])
        _model_progress(app, timedelta(seconds=5))
        app.extensions["celery"].send_task(
            "detector.detect_frames", args=[job_id, 0, 0, 1], queue="detector.default"
        )
        counts = watchdog()
        assert _job_counts(counts) == {"resent": 0, "resumed": 0, "failed": 0}
        assert counts["waiting"] == 1
        assert db.session.get(Job, job_id).status is JobStatus.PROCESSING


def test_a_waiting_job_whose_messages_are_gone_is_failed(app):
    """The model's detectors work, but its queue is empty and none of the job's chunks runs."""
    reconfigure(app, JOB_STALL_SECONDS=60)
    with app.app_context():
        job_id = _job(JobStatus.PROCESSING, timedelta(minutes=30), [ChunkStatus.DONE, ChunkStatus.PENDING])
        _model_progress(app, timedelta(seconds=5))
        assert watchdog()["failed"] == 1
        job = db.session.get(Job, job_id)
        assert job.status is JobStatus.FAILED
        assert "chunks [1] have no message left in queue detector.default" in job.error


def test_a_job_whose_model_made_no_progress_for_the_stall_time_is_failed(app):
    reconfigure(app, JOB_STALL_SECONDS=60)
    with app.app_context():
        job_id = _job(JobStatus.PROCESSING, timedelta(minutes=30), [ChunkStatus.PENDING])
        _model_progress(app, timedelta(minutes=10))
        app.extensions["celery"].send_task(
            "detector.detect_frames", args=[job_id, 0, 0, 1], queue="detector.default"
        )
        assert watchdog()["failed"] == 1
        error = db.session.get(Job, job_id).error
        assert "no detector serving model 'default' has made progress on any chunk for 600 s" in error


def test_a_processing_job_waiting_behind_other_jobs_says_so(app):
    from detector.pipeline.admission import waiting_message

    with app.app_context():
        earlier = _job(
            JobStatus.PROCESSING,
            timedelta(minutes=10),
            [ChunkStatus.DONE, ChunkStatus.RUNNING, ChunkStatus.PENDING],
        )
        later = _job(JobStatus.PROCESSING, timedelta(minutes=5), [ChunkStatus.PENDING, ChunkStatus.PENDING])
        assert waiting_message(db.session.get(Job, later), None) == (
            "waiting for a detector of model 'default': its chunks are queued behind 2 chunks of earlier jobs"
        )
        # The earlier job has a chunk running: it waits for nothing.
        assert waiting_message(db.session.get(Job, earlier), None) is None
