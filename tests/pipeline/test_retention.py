"""The retention sweep and the quota's sizes, called directly: one claim per job however
many sweeps run, a failed deletion retried, what it logs, and sizes measured for old jobs."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from detector.db import db
from detector.models import Job, JobRender, JobStatus, RenderStatus, User, utcnow
from detector.pipeline import retention
from detector.pipeline.quota import storage_used, stored_bytes
from detector.pipeline.retention import measure_videos, sweep_videos
from detector.pipeline.tasks import watchdog
from tests.conftest import reconfigure


def _stored(app, data: bytes) -> str:
    storage = app.extensions["video_storage"]
    upload = storage.new_upload()
    upload.write(data)
    return storage.commit_upload(upload)


def _finished_job(
    app, *, age: timedelta, render: bool = False, status: JobStatus = JobStatus.SUCCEEDED
) -> str:
    """A job that finished ``age`` ago, with a stored video (and render) and no sizes recorded."""
    with app.app_context():
        session = db.session
        user = session.query(User).first() or User(username="r", password_hash="x")
        session.add(user)
        session.flush()
        then = utcnow() - age
        job = Job(
            owner_id=user.id,
            original_filename="v.mp4",
            storage_key=_stored(app, b"v" * 1000),
            status=status,
            score_threshold=0.5,
            created_at=then,
            finished_at=then,
        )
        if render:
            job.render = JobRender(status=RenderStatus.SUCCEEDED, key=_stored(app, b"r" * 300))
        session.add(job)
        session.commit()
        return job.id


def _files(app) -> list[Path]:
    return sorted(p for p in Path(app.config["VIDEO_STORAGE"]).iterdir() if p.is_file())


def _deleted_at(app, job_id: str):
    with app.app_context():
        return db.session.get(Job, job_id).video_deleted_at


def _sweep(app) -> int:
    with app.app_context():
        return sweep_videos(app.extensions["video_storage"])


def test_a_second_sweep_that_found_the_same_jobs_claims_none(app, monkeypatch):
    """Sweep A lists the expired jobs; sweep B (another worker) deletes them all before A
    claims any: A's conditional claims match nothing and it deletes nothing."""
    reconfigure(app, VIDEO_RETENTION_DAYS=1)
    jobs = [_finished_job(app, age=timedelta(days=2), render=True) for _ in range(3)]
    real = retention._delete_videos
    other: list[int] = []
    started = threading.Event()

    def sweep_b_first(job_id, storage, now):
        if not started.is_set():  # A's first claim; B, running meanwhile, claims directly
            started.set()
            thread = threading.Thread(target=lambda: other.append(_sweep(app)))
            thread.start()
            thread.join()
        return real(job_id, storage, now)

    monkeypatch.setattr(retention, "_delete_videos", sweep_b_first)
    assert _sweep(app) == 0
    assert other == [3]
    assert _files(app) == []
    assert all(_deleted_at(app, job_id) for job_id in jobs)


def test_two_sweeps_at_once_delete_each_job_once(app):
    reconfigure(app, VIDEO_RETENTION_DAYS=1)
    jobs = [_finished_job(app, age=timedelta(days=2), render=True) for _ in range(6)]
    with app.app_context():
        assert measure_videos(app.extensions["video_storage"]) == len(jobs)
        owner = db.session.get(Job, jobs[0]).owner_id
        assert storage_used(owner) == len(jobs) * 1300
    start = threading.Barrier(2)
    counts: list[int] = []

    def run() -> None:
        start.wait()
        counts.append(_sweep(app))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(counts) == 2 and sum(counts) == len(jobs)
    assert _files(app) == []
    assert all(_deleted_at(app, job_id) for job_id in jobs)
    with app.app_context():
        assert storage_used(owner) == stored_bytes(owner) == 0  # each job's bytes freed once


def test_a_deletion_that_fails_leaves_the_job_for_the_next_sweep(app, monkeypatch):
    reconfigure(app, VIDEO_RETENTION_DAYS=1)
    job_id = _finished_job(app, age=timedelta(days=2))
    storage = app.extensions["video_storage"]

    def refuse(key: str) -> None:
        raise PermissionError(f"cannot remove {key}")

    monkeypatch.setattr(storage, "delete", refuse)
    assert _sweep(app) == 0
    assert _deleted_at(app, job_id) is None and len(_files(app)) == 1
    monkeypatch.undo()
    assert _sweep(app) == 1
    assert _deleted_at(app, job_id) is not None and _files(app) == []


def test_the_sweep_logs_what_it_deleted(app, caplog: pytest.LogCaptureFixture):
    reconfigure(app, VIDEO_RETENTION_DAYS=1)
    job_id = _finished_job(app, age=timedelta(days=2), render=True)
    with app.app_context():
        job = db.session.get(Job, job_id)
        keys = (job.storage_key, job.render.key)
    with caplog.at_level(logging.INFO, logger="detector.pipeline.retention"):
        with app.app_context():
            assert watchdog()["videos_deleted"] == 1
    [line] = [r.getMessage() for r in caplog.records if r.name == "detector.pipeline.retention"]
    assert line.startswith(f"job={job_id} stored videos deleted")
    assert keys[0] in line and keys[1] in line


def test_jobs_without_a_stored_video_are_never_dated_nor_swept(app):
    """A source_url job whose download failed never stored a video: nothing expires."""
    reconfigure(app, VIDEO_RETENTION_DAYS=1)
    job_id = _finished_job(app, age=timedelta(days=5), status=JobStatus.FAILED)
    with app.app_context():
        db.session.execute(Job.__table__.update().where(Job.id == job_id).values(storage_key=""))
        db.session.commit()
    assert _sweep(app) == 0
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job.video_expires_at is None and job.video_deleted_at is None


def test_videos_stored_before_sizes_were_recorded_are_measured(app):
    """Jobs from before the quota have no sizes; the watchdog measures their files once."""
    measured = _finished_job(app, age=timedelta(hours=1), render=True)
    gone = _finished_job(app, age=timedelta(hours=1))
    with app.app_context():
        owner = db.session.get(Job, measured).owner_id
        app.extensions["video_storage"].path(db.session.get(Job, gone).storage_key).unlink()
        assert storage_used(owner) == 0
        assert watchdog()["videos_measured"] == 2
        assert (db.session.get(Job, measured).video_bytes, db.session.get(JobRender, measured).bytes) == (
            1000,
            300,
        )
        assert db.session.get(Job, gone).video_bytes == 0  # its file is missing: nothing to count
        assert storage_used(owner) == stored_bytes(owner) == 1300
        assert measure_videos(app.extensions["video_storage"]) == 0  # once only
