"""Jobs written straight into the database (detector.bench.stored), and the benchmark jobs
built on them."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from detector.bench import analytics as analytics_bench
from detector.bench import stored, trackingstep
from detector.db.migrate import upgrade
from detector.models import Analytics, FrameDetections, Job, JobStatus, User


@pytest.fixture
def database_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'stored.sqlite3'}"
    upgrade(url)
    return url


def test_a_stored_job_holds_its_frames_in_batches_and_reuses_its_owner(database_url, monkeypatch):
    monkeypatch.setattr(stored, "FRAMES_PER_INSERT", 2)
    engine = create_engine(database_url)
    with Session(engine) as session:
        frames = ((i * 5, i / 2, [{"label": "person", "score": 0.9}]) for i in range(5))
        first = stored.stored_job(session, frames, status=JobStatus.PROCESSING, owner="o", track=True)
        second = stored.stored_job(session, owner="o", score_threshold=0.25)
        session.commit()
        assert first.status is JobStatus.PROCESSING and first.track and first.dispatched
        assert second.status is JobStatus.SUCCEEDED and second.score_threshold == 0.25
        assert first.owner_id == second.owner_id == stored.user_id(session, "o")
        assert session.scalar(select(func.count()).select_from(User)) == 1
        rows = session.execute(
            select(FrameDetections.index, FrameDetections.timestamp)
            .where(FrameDetections.job_id == first.id)
            .order_by(FrameDetections.index)
        ).all()
        assert [tuple(r) for r in rows] == [(0, 0.0), (5, 0.5), (10, 1.0), (15, 1.5), (20, 2.0)]
        assert session.scalar(select(func.count()).where(FrameDetections.job_id == second.id)) == 0
    engine.dispose()


def test_the_benchmark_jobs_are_stored_as_described(tmp_path):
    tracking_url = f"sqlite:///{tmp_path / 'tracking.sqlite3'}"
    tracking_job = trackingstep.make_job(tracking_url, 3)
    analytics_url = f"sqlite:///{tmp_path / 'analytics.sqlite3'}"
    objects = [[{"label": "person", "class_id": 0, "score": 0.9, "box": [0, 0, 9, 9], "track_id": 1}]] * 4
    analytics_job, spec_id = analytics_bench.make_job(analytics_url, objects)
    for url, job_id, status, frames in (
        (tracking_url, tracking_job, JobStatus.PROCESSING, [(0, 0.0), (25, 1.0), (50, 2.0)]),
        (analytics_url, analytics_job, JobStatus.SUCCEEDED, [(i, i / analytics_bench.FPS) for i in range(4)]),
    ):
        engine = create_engine(url)
        with Session(engine) as session:
            job = session.get(Job, job_id)
            assert job is not None and job.status is status and job.track
            assert job.frames_total == len(frames)
            rows = session.execute(
                select(FrameDetections.index, FrameDetections.timestamp)
                .where(FrameDetections.job_id == job_id)
                .order_by(FrameDetections.index)
            ).all()
            assert [tuple(r) for r in rows] == frames
            if url == analytics_url:
                assert session.get(Analytics, (job_id, spec_id)) is not None
        engine.dispose()
