"""A chunk's delivery holds it until a later delivery takes it (detector.pipeline.chunks):
the earlier one, come back late (its worker was cut off, say), changes nothing.

The steps of `ChunkRun` on the test app's SQLite database, without a worker; the
whole story on real hosts is tests/pipeline/test_node.py.
"""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select

from detector.db import db
from detector.detection import AnalysedFrame
from detector.detection.detections import Detections
from detector.models import Chunk, ChunkStatus, FrameDetections, Job, JobStatus, User
from detector.pipeline.activity import WORKER
from detector.pipeline.chunks import ChunkRun, ChunkTakenOver, Skip
from detector.video import ChunkPlan

FRAMES = 4


@pytest.fixture
def job_id(app: Flask) -> str:
    """A processing job with one chunk of FRAMES frames, not started yet."""
    with app.app_context():
        user = User(username="u", password_hash="x")
        db.session.add(user)
        db.session.flush()
        job = Job(owner_id=user.id, original_filename="v.mp4", storage_key="k", score_threshold=0.5)
        job.status = JobStatus.PROCESSING
        job.model_name = "m"
        db.session.add(job)
        db.session.flush()
        plan = ChunkPlan(
            index=0,
            start_frame=0,
            end_frame=FRAMES,
            seek_pts=0,
            frame_pts=list(range(FRAMES)),
            timestamps=[i / 4 for i in range(FRAMES)],
            frames=list(range(FRAMES)),
        )
        db.session.add(Chunk.from_plan(job.id, plan))
        db.session.commit()
        return job.id


def _frames() -> list[AnalysedFrame]:
    return [AnalysedFrame(i, i / 4, Detections.empty()) for i in range(FRAMES)]


def _state(job_id: str) -> tuple[ChunkStatus, int, int, str | None, JobStatus, int]:
    db.session.expire_all()
    chunk = db.session.get(Chunk, (job_id, 0))
    job = db.session.get(Job, job_id)
    assert chunk is not None and job is not None
    rows = db.session.scalar(select(func.count()).where(FrameDetections.job_id == job_id))
    return chunk.status, chunk.deliveries, chunk.frames_done, chunk.worker, job.status, int(rows or 0)


def test_a_delivery_that_was_taken_over_changes_nothing(app: Flask, job_id: str) -> None:
    with app.app_context():
        first = ChunkRun(job_id, 0, 0, FRAMES)
        assert not isinstance(first.start(), dict)
        first.progress(2)
        assert _state(job_id) == (ChunkStatus.RUNNING, 1, 2, WORKER, JobStatus.PROCESSING, 0)

        # The broker thought the first delivery's worker dead and delivered the chunk again.
        second = ChunkRun(job_id, 0, 0, FRAMES)
        assert not isinstance(second.start(), dict)
        taken = _state(job_id)
        assert taken == (ChunkStatus.RUNNING, 2, 0, WORKER, JobStatus.PROCESSING, 0)

        # The first one comes back: its progress, its frames and its failure are refused.
        with pytest.raises(ChunkTakenOver):
            first.progress(4)
        with pytest.raises(Skip, match="taken over"):
            first.store(_frames(), "m")
        assert not first.fail("chunk 0 (frames 0-3) failed: the database went away")
        assert _state(job_id) == taken

        # The second one ends the chunk as usual.
        second.progress(4)
        assert second.store(_frames(), "m") == 0
        assert _state(job_id) == (ChunkStatus.DONE, 2, FRAMES, WORKER, JobStatus.PROCESSING, FRAMES)
        with pytest.raises(Skip, match="taken over"):
            first.store(_frames(), "m")
        assert _state(job_id)[0] is ChunkStatus.DONE


def test_a_failing_delivery_that_holds_its_chunk_fails_the_job(app: Flask, job_id: str) -> None:
    with app.app_context():
        run = ChunkRun(job_id, 0, 0, FRAMES)
        assert not isinstance(run.start(), dict)
        assert run.fail("chunk 0 (frames 0-3) failed: boom")
        status, deliveries, _done, _worker, job_status, _rows = _state(job_id)
        assert (status, deliveries, job_status) == (ChunkStatus.FAILED, 1, JobStatus.FAILED)
