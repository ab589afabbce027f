"""A job ends exactly once: racing merges, a cancel racing a merge, a failing chunk
racing the last good one. Each race is played at its worst point: one side has
read the job as processing and complete, and stops there while the other side
runs to its end; then it goes on. Both orders end in one final state, one
webhook event, and the side effects (event, next job admitted, metric) once.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from detector.app import create_app
from detector.bench.stored import stored_job, user_id
from detector.db import db
from detector.db.migrate import upgrade
from detector.models import Chunk, ChunkStatus, FrameDetections, Job, JobStatus, User, WebhookEvent
from detector.pipeline import dispatch, merging
from detector.pipeline.merging import chunk_failed, merge_chunks
from tests.conftest import base_config, postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path) -> Iterator[Flask]:
    config = base_config(tmp_path)
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    with postgres_schema() if request.param == "postgresql" else _nothing() as url:
        if url:
            config["DATABASE_URL"] = url
        upgrade(config["DATABASE_URL"])
        app = create_app(config)
        yield app
        db.session.remove()
        db.engine.dispose()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def effects(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each side effect of a job's end ran."""
    seen: Counter[str] = Counter()

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(dispatch, "job_ended", counting("event", dispatch.job_ended))
    monkeypatch.setattr(dispatch, "admit_waiting", counting("admit", dispatch.admit_waiting))
    monkeypatch.setattr(
        dispatch.metrics, "observe_job_ended", counting("metric", dispatch.metrics.observe_job_ended)
    )
    return seen


def _complete_job(owner_id: int | None = None, chunks: int = 2) -> str:
    """A processing job with a callback_url whose chunks are all done and stored
    (of a new user, unless ``owner_id`` says whose)."""
    session = db.session
    if owner_id is None:
        owner_id = user_id(session, f"racer{session.scalar(select(func.count()).select_from(User))}")
    job = stored_job(
        session,
        [(i, float(i), []) for i in range(chunks)],
        status=JobStatus.PROCESSING,
        owner_id=owner_id,
        frames_total=chunks,
        chunk_count=chunks,
        callback_url="https://hooks.example.com/detector",
    )
    for i in range(chunks):
        session.add(
            Chunk(
                job_id=job.id,
                index=i,
                start_frame=i,
                end_frame=i + 1,
                seek_pts=0,
                frame_pts=[i],
                timestamps=[float(i)],
                status=ChunkStatus.DONE,
                frames_done=1,
                objects=2,
            )
        )
    session.commit()
    return job.id


def _paused_merge(
    app: Flask, monkeypatch: pytest.MonkeyPatch, job_id: str
) -> tuple[threading.Thread, Callable[[], dict[str, Any]]]:
    """A merge of ``job_id`` in a thread of its own, stopped right after it has read the
    job as processing and its chunks as complete, before it ends the job. Returns the thread, and a function
    that lets it go on and gives its result."""
    reached, go_on = threading.Event(), threading.Event()
    result: dict[str, Any] = {}
    end_job = merging.end_job
    merging_thread: list[threading.Thread] = []

    def wait_then_end(*args: Any, **kwargs: Any) -> bool:
        if threading.current_thread() is merging_thread[0]:
            reached.set()
            assert go_on.wait(30)
        return end_job(*args, **kwargs)

    monkeypatch.setattr(merging, "end_job", wait_then_end)

    def run() -> None:
        with app.app_context():
            result.update(merge_chunks(None, job_id))
            db.session.remove()

    thread = threading.Thread(target=run)
    merging_thread.append(thread)
    thread.start()
    assert reached.wait(30), "the merge never read the job"

    def finish() -> dict[str, Any]:
        go_on.set()
        thread.join(30)
        assert not thread.is_alive()
        return result

    return thread, finish


def _final(job_id: str) -> tuple[JobStatus, list[str], int]:
    db.session.expire_all()
    status = db.session.scalar(select(Job.status).where(Job.id == job_id))
    events = list(db.session.scalars(select(WebhookEvent.type).where(WebhookEvent.job_id == job_id)))
    frames = db.session.scalar(select(func.count()).where(FrameDetections.job_id == job_id))
    db.session.rollback()
    return status, events, int(frames or 0)


def test_two_merges_at_once_end_the_job_once(app, monkeypatch, effects):
    with app.app_context():
        job_id = _complete_job()
        _thread, finish = _paused_merge(app, monkeypatch, job_id)
        second = merge_chunks(None, job_id)  # runs to its end while the first waits
        first = finish()
        assert second["objects"] == 4
        assert first == {"job_id": job_id, "skipped": "job ended meanwhile"}
        assert _final(job_id) == (JobStatus.SUCCEEDED, ["job.succeeded"], 2)
        assert effects == {"event": 1, "admit": 1, "metric": 1}


def test_a_cancel_during_a_merge_stands(app, monkeypatch, effects, auth_for):
    client, headers, job_id = auth_for(app)
    _thread, finish = _paused_merge(app, monkeypatch, job_id)
    answer = client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["status"] == "cancelled"
    assert finish() == {"job_id": job_id, "skipped": "job ended meanwhile"}
    with app.app_context():
        # The frames are gone and the job says so: it never reads as succeeded.
        assert _final(job_id) == (JobStatus.CANCELLED, ["job.cancelled"], 0)
    assert effects == {"event": 1, "admit": 1, "metric": 1}


def test_a_cancel_after_the_merge_took_answers_409_with_the_final_state(app, effects, auth_for):
    client, headers, job_id = auth_for(app)
    with app.app_context():
        merge_chunks(None, job_id)
    answer = client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    assert answer.status_code == 409
    assert answer.get_json() == {
        "error": "job_ended",
        "message": f"job {job_id} has already succeeded",
        "status": "succeeded",
    }
    with app.app_context():
        assert _final(job_id) == (JobStatus.SUCCEEDED, ["job.succeeded"], 2)
    assert effects == {"event": 1, "admit": 1, "metric": 1}


def test_a_failing_chunk_racing_the_last_good_one_ends_the_job_once(app, monkeypatch, effects):
    with app.app_context():
        job_id = _complete_job()
        _thread, finish = _paused_merge(app, monkeypatch, job_id)
        # The chord's error callback, for a chunk that failed while the last good one merged.
        chunk_failed(None, RuntimeError("out of memory"), None, job_id)
        assert finish() == {"job_id": job_id, "skipped": "job ended meanwhile"}
        status, events, frames = _final(job_id)
        assert (status, events, frames) == (JobStatus.FAILED, ["job.failed"], 0)
        # The other order: the merge ends the job first, and the failure changes nothing.
        other = _complete_job()
        merge_chunks(None, other)
        chunk_failed(None, RuntimeError("out of memory"), None, other)
        assert _final(other) == (JobStatus.SUCCEEDED, ["job.succeeded"], 2)
    assert effects == {"event": 2, "admit": 2, "metric": 2}


@pytest.fixture
def auth_for() -> Callable[[Flask], tuple[Any, dict[str, str], str]]:
    """A registered user's client and headers, and a complete job of theirs."""

    def make(app: Flask) -> tuple[Any, dict[str, str], str]:
        client = app.test_client()
        client.post("/api/auth/register", json={"username": "racer", "password": "password123"})
        token = client.post("/api/auth/login", json={"username": "racer", "password": "password123"})
        headers = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
        with app.app_context():
            job_id = _complete_job_of("racer")
        return client, headers, job_id

    return make


def _complete_job_of(username: str) -> str:
    return _complete_job(db.session.scalar(select(User.id).where(User.username == username)))
