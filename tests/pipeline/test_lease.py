"""detector.pipeline.lease: one conditional UPDATE per step, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from detector.db import make_engine
from detector.models import Base, Job, JobRender, JobStatus, RenderStatus, User, utcnow
from detector.pipeline import lease
from tests.conftest import postgres_schema

TTL = timedelta(minutes=2)
ACTIVE = (RenderStatus.QUEUED, RenderStatus.RENDERING)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path / 'lease.sqlite3'}")
        Base.metadata.create_all(made)
        yield made
        made.dispose()
        return
    with postgres_schema() as url:
        made = create_engine(url)
        Base.metadata.create_all(made)
        yield made
        made.dispose()


def _job(session: Session, job_id: str, **render: object) -> None:
    """A succeeded job with a render in the state ``render`` says (none without)."""
    if session.get(User, 1) is None:
        session.add(User(id=1, username="u", password_hash="x"))
        session.flush()
    job = Job(id=job_id, owner_id=1, original_filename="v.mp4", storage_key="k", score_threshold=0.5)
    job.status = JobStatus.SUCCEEDED
    if render:
        job.render = JobRender(**render)
    session.add(job)
    session.commit()


def _take(session: Session, job_id: str, **values: object) -> bool:
    return lease.take(
        session,
        JobRender,
        JobRender.job_id == job_id,
        JobRender.status.in_(ACTIVE),
        stamp=JobRender.progress_at,
        ttl=TTL,
        count=JobRender.deliveries,
        **values,
    )


def _render(session: Session, job_id: str) -> JobRender:
    session.expire_all()
    render = session.get(JobRender, job_id)
    assert render is not None
    return render


def test_a_lapsed_lease_is_taken_once_and_counted(engine: Engine) -> None:
    with Session(engine) as session:
        _job(session, "a", status=RenderStatus.QUEUED, progress_at=utcnow() - TTL * 2, deliveries=1)
        assert _take(session, "a", status=RenderStatus.RENDERING)
        session.commit()
        render = _render(session, "a")
        assert (render.status, render.deliveries) == (RenderStatus.RENDERING, 2)
        assert not lease.lapsed(render.progress_at, TTL)
        # Held now: a second taker (a redelivery, the watchdog) gets nothing, counts nothing.
        assert not _take(session, "a")
        session.commit()
        assert _render(session, "a").deliveries == 2


def test_only_a_row_whose_where_holds_is_taken_renewed_or_released(engine: Engine) -> None:
    with Session(engine) as session:
        _job(session, "a", status=RenderStatus.FAILED, progress_at=utcnow() - TTL * 2, frames_done=5)
        row = (JobRender.job_id == "a", JobRender.status == RenderStatus.RENDERING)
        assert not _take(session, "a")  # lapsed, but not queued nor rendering
        assert not lease.renew(session, JobRender, *row, stamp=JobRender.progress_at, frames_done=9)
        assert not lease.release(session, JobRender, *row, stamp=JobRender.progress_at, error="x")
        assert not _take(session, "missing")
        session.commit()
        render = _render(session, "a")
        assert (render.frames_done, render.error, render.deliveries) == (5, None, 0)
        assert lease.lapsed(render.progress_at, TTL)

        session.execute(JobRender.__table__.update().values(status=RenderStatus.RENDERING))
        assert lease.renew(session, JobRender, *row, stamp=JobRender.progress_at, frames_done=9)
        session.commit()
        render = _render(session, "a")
        assert render.frames_done == 9 and not lease.lapsed(render.progress_at, TTL)
        assert lease.release(
            session, JobRender, *row, stamp=JobRender.progress_at, status=RenderStatus.SUCCEEDED
        )
        session.commit()
        assert _render(session, "a").status is RenderStatus.SUCCEEDED


def test_expired_selects_what_lapsed_judges_lapsed(engine: Engine) -> None:
    """The SQL clause and the judgement of a value read agree: never taken (null) and
    older than the time to live have lapsed, a renewal within it has not."""
    now = utcnow()
    stamps = {
        "never": None,
        "old": now - TTL - timedelta(seconds=1),
        "fresh": now - TTL + timedelta(seconds=1),
        "now": now,
    }
    with Session(engine) as session:
        for job_id, stamp in stamps.items():
            _job(session, job_id)
            session.execute(Job.__table__.update().where(Job.id == job_id).values(tracked_at=stamp))
        session.commit()
        found = set(session.scalars(select(Job.id).where(lease.expired(Job.tracked_at, TTL, now))))
    assert found == {"never", "old"}
    assert {job_id for job_id, stamp in stamps.items() if lease.lapsed(stamp, TTL, now)} == found
    assert lease.remaining(stamps["fresh"], TTL, now) == timedelta(seconds=1)
    assert lease.remaining(stamps["old"], TTL, now) < timedelta(0)


def _blocked_on_a_lock(engine: Engine, pid: int) -> bool:
    with engine.connect() as watcher:
        wait = watcher.scalar(
            text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
    return wait == "Lock"


def test_of_two_takers_at_once_exactly_one_takes(engine: Engine) -> None:
    """A takes and has not committed; B's take waits for A's row, then finds it held."""
    make = sessionmaker(engine)
    with make() as setup:
        _job(setup, "a", status=RenderStatus.QUEUED, progress_at=utcnow() - TTL * 2)
    first, second = make(), make()
    results: list[bool] = []
    try:
        assert _take(first, "a", status=RenderStatus.RENDERING)
        pid = None
        if engine.dialect.name == "postgresql":
            pid = second.scalar(text("SELECT pg_backend_pid()"))
            second.commit()

        def take_second() -> None:
            results.append(_take(second, "a", status=RenderStatus.RENDERING))
            second.commit()

        racer = threading.Thread(target=take_second)
        racer.start()
        if pid is not None:  # B is waiting for A's row lock before A commits
            for _ in range(200):
                if _blocked_on_a_lock(engine, pid):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the second take never waited for the first one's row")
        first.commit()
        racer.join(timeout=60)
        assert results == [False]
        assert _render(first, "a").deliveries == 1
    finally:
        first.close()
        second.close()
