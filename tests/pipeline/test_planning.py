"""process_video, called directly as a worker would: one delivery plans a job, never two."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from celery.exceptions import Retry
from sqlalchemy import func, select, update

import detector.pipeline.planning as planning
from detector.db import db
from detector.models import Chunk, Job, JobStatus, utcnow
from detector.pipeline.tasks import PLANNING_LEASE, process_video
from tests.conftest import reconfigure


def _sent(app, task: str) -> int:
    folder = Path(app.config["DATA_DIR"]) / "broker" / "queue"
    return sum(json.loads(p.read_text())["headers"]["task"] == task for p in folder.glob("*.msg"))


@pytest.fixture
def job_id(app, client, auth, small_video) -> str:
    """A job uploaded through the API (its process_video message is left in the queue)."""
    reconfigure(app, CHUNK_FRAMES=8)  # 20 frames, keyframes every 8: three chunks
    with small_video.open("rb") as f:
        response = client.post("/api/jobs", headers=auth.headers(), data={"video": (f, "small.mp4")})
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def _chunks(job_id: str) -> int:
    return int(db.session.scalar(select(func.count()).where(Chunk.job_id == job_id)) or 0)


def test_a_second_delivery_while_the_first_is_planning_waits_instead_of_planning_again(
    app, job_id, monkeypatch
):
    """A resent or redelivered process_video can arrive while another worker is
    planning the job: it must not plan it a second time (twice the chunks sent)."""
    second: list[object] = []
    real_index_frames = planning.index_frames

    def index_frames_while_another_delivery_arrives(path):
        if second:  # the other delivery got this far too (it must not)
            return real_index_frames(path)

        def deliver_again() -> None:
            with app.app_context():
                try:
                    second.append(process_video(job_id))
                except Retry as exc:
                    second.append(exc)
                finally:
                    db.session.remove()

        second.append("arrived")
        other = threading.Thread(target=deliver_again)
        other.start()
        other.join(60)
        return real_index_frames(path)

    monkeypatch.setattr(planning, "index_frames", index_frames_while_another_delivery_arrives)
    with app.app_context():
        planned = process_video(job_id)
        assert planned["chunks"] == 3
        assert len(second) == 2 and isinstance(second[1], Retry), second
        assert _chunks(job_id) == 3
        job = db.session.get(Job, job_id)
        assert job is not None and job.dispatched and job.status is JobStatus.PROCESSING
    assert _sent(app, "detector.detect_frames") == 3

    # Once the first has dispatched the job, the waiting delivery's retry finds it done.
    monkeypatch.setattr(planning, "index_frames", real_index_frames)
    with app.app_context():
        assert process_video(job_id) == {"job_id": job_id, "skipped": "already dispatched"}
    assert _sent(app, "detector.detect_frames") == 3


def test_a_planner_that_died_is_taken_over_once_its_lease_has_run_out(app, job_id):
    """The worker planning the job was killed: its message comes back (acks late),
    waits out the lease, and then plans the job."""
    with app.app_context():
        claimed_at = utcnow()
        db.session.execute(
            update(Job).where(Job.id == job_id).values(status=JobStatus.PROCESSING, started_at=claimed_at)
        )
        db.session.commit()
        with pytest.raises(Retry):
            process_video(job_id)
        assert _chunks(job_id) == 0

        db.session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(started_at=claimed_at - PLANNING_LEASE - timedelta(seconds=1))
        )
        db.session.commit()
        assert process_video(job_id)["chunks"] == 3
        job = db.session.get(Job, job_id)
        assert job is not None and job.dispatched
        assert job.started_at is not None and job.started_at >= claimed_at  # when the work really began
    assert _sent(app, "detector.detect_frames") == 3


def test_a_cancelled_job_is_not_planned(app, job_id):
    with app.app_context():
        db.session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.CANCELLED))
        db.session.commit()
        assert process_video(job_id)["skipped"] == "job is gone or finished"
        assert _chunks(job_id) == 0
    assert _sent(app, "detector.detect_frames") == 0


def test_chunks_are_stored_a_batch_at_a_time_and_each_sent_once(app, job_id, monkeypatch):
    """Planning stores a long video's chunks CHUNK_ROWS at a time as it plans them:
    every chunk is stored once, in order, with its frames, and sent once."""
    monkeypatch.setattr(planning, "CHUNK_ROWS", 2)  # three chunks: a batch of two, then one
    with app.app_context():
        assert process_video(job_id)["chunks"] == 3
        chunks = db.session.scalars(select(Chunk).where(Chunk.job_id == job_id).order_by(Chunk.index)).all()
        assert [c.index for c in chunks] == [0, 1, 2]
        assert [f for c in chunks for f in c.plan().frames] == list(range(20))
        job = db.session.get(Job, job_id)
        assert job is not None and job.chunk_count == 3 and job.frames_total == 20
    assert _sent(app, "detector.detect_frames") == 3
