"""Committed migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from detector.db.migrate import alembic_config, upgrade
from detector.models import Base
from tests.conftest import postgres_schema


def test_exactly_one_head():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def _assert_schema_matches_models(url: str) -> None:
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_upgrade_head_on_empty_sqlite_gives_the_models_schema(tmp_path):
    _assert_schema_matches_models(f"sqlite:///{tmp_path / 'empty.sqlite3'}")


def test_upgrade_head_on_empty_postgres_gives_the_models_schema():
    with postgres_schema() as url:
        _assert_schema_matches_models(url)


def _counters_start_from_the_jobs(url: str) -> None:
    """Users from before storage_used_bytes get it from their jobs' stored sizes (not
    deleted videos only); nothing is reserved."""
    upgrade(url, "c2b3d4e5f6a7")
    engine = create_engine(url)
    job = (
        "INSERT INTO jobs (id, owner_id, original_filename, storage_key, status, rotation, score_threshold,"
        " dispatched, created_at, download_deliveries, track, render_deliveries, video_bytes, render_bytes,"
        " video_deleted_at) VALUES (:id, :owner, 'v.mp4', 'k', 'succeeded', 0, 0.5, false, :now, 0, false, 0,"
        " :video, :render, :deleted)"
    )
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for user_id, name in ((1, "kept"), (2, "none")):
            connection.execute(
                text(
                    "INSERT INTO users (id, username, password_hash, created_at) VALUES (:id, :name, 'x', :now)"
                ),
                {"id": user_id, "name": name, "now": now},
            )
        for job_id, video, render, deleted in (
            ("a" * 32, 1000, 300, None),
            ("b" * 32, 50, None, None),
            ("c" * 32, None, None, None),  # not measured yet: counted when the watchdog measures it
            ("d" * 32, 7000, 700, now),  # deleted by retention: counts nothing
        ):
            connection.execute(
                text(job),
                {"id": job_id, "owner": 1, "now": now, "video": video, "render": render, "deleted": deleted},
            )
    upgrade(url, "d3c4e5f6a7b8")
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, storage_used_bytes, storage_reserved_bytes FROM users ORDER BY id")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [(1, 1350, 0), (2, 0, 0)]


def test_storage_counters_start_from_the_jobs_on_sqlite(tmp_path):
    _counters_start_from_the_jobs(f"sqlite:///{tmp_path / 'old.sqlite3'}")


def test_storage_counters_start_from_the_jobs_on_postgres():
    with postgres_schema() as url:
        _counters_start_from_the_jobs(url)


def _renders_and_downloads_keep_their_values(url: str) -> None:
    """A job's render_* and download columns move to job_renders and job_downloads with
    their values (a job with neither gets no row), and downgrade moves them back."""
    upgrade(url, "e4d5f6a7b8c9")
    engine = create_engine(url)
    then = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    later = datetime(2026, 12, 1, 10, 45, tzinfo=UTC)
    job = (
        "INSERT INTO jobs (id, owner_id, original_filename, storage_key, status, rotation, score_threshold,"
        " dispatched, created_at, track, source_url, bytes_downloaded, bytes_total, download_deliveries,"
        " download_progress_at, render_status, render_key, render_frames_done, render_error,"
        " render_requested_at, render_progress_at, render_deliveries, render_bytes)"
        " VALUES (:id, 1, 'v.mp4', 'k', :status, 0, 0.5, false, :then, false, :url, :received, :total,"
        " :downloads, :download_at, :render, :key, :frames, :error, :then, :later, :renders, :bytes)"
    )
    none = {
        "url": None, "received": None, "total": None, "downloads": 0, "download_at": None,
        "render": None, "key": None, "frames": None, "error": None, "renders": 0, "bytes": None,
    }  # fmt: skip
    jobs = {
        "a" * 32: {**none, "status": "succeeded", "render": "succeeded", "key": "r.mp4", "frames": 250,
                   "renders": 1, "bytes": 4321},
        "b" * 32: {**none, "status": "succeeded", "render": "failed", "frames": 12, "error": "broken",
                   "renders": 3},
        "c" * 32: {**none, "status": "downloading", "url": "https://example.com/v.mp4",
                   "received": 1000, "total": 5000, "downloads": 2, "download_at": later},
        "d" * 32: {**none, "status": "queued"},
    }  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'u', 'x', :now)"),
            {"now": then},
        )
        for job_id, values in jobs.items():
            connection.execute(text(job), {"id": job_id, "then": then, "later": later, **values})
    upgrade(url, "f5e6a7b8c9d0")
    with engine.connect() as connection:
        renders = connection.execute(
            text(
                "SELECT job_id, status, key, frames_done, error, deliveries, bytes FROM job_renders"
                " ORDER BY job_id"
            )
        ).all()
        downloads = connection.execute(
            text("SELECT job_id, bytes_received, bytes_total, deliveries FROM job_downloads")
        ).all()
        times = connection.execute(
            text("SELECT requested_at, progress_at FROM job_renders WHERE job_id = :id"), {"id": "a" * 32}
        ).one()
    assert [tuple(row) for row in renders] == [
        ("a" * 32, "succeeded", "r.mp4", 250, None, 1, 4321),
        ("b" * 32, "failed", None, 12, "broken", 3, None),
    ]
    assert [tuple(row) for row in downloads] == [("c" * 32, 1000, 5000, 2)]
    assert [_utc(t) for t in times] == [then, later]

    command.downgrade(alembic_config(url), "e4d5f6a7b8c9")
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, render_status, render_key, render_frames_done, render_error, render_deliveries,"
                " render_bytes, bytes_downloaded, bytes_total, download_deliveries FROM jobs ORDER BY id"
            )
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("a" * 32, "succeeded", "r.mp4", 250, None, 1, 4321, None, None, 0),
        ("b" * 32, "failed", None, 12, "broken", 3, None, None, None, 0),
        ("c" * 32, None, None, None, None, 0, None, 1000, 5000, 2),
        ("d" * 32, None, None, None, None, 0, None, None, None, 0),
    ]


def _utc(value: datetime | str) -> datetime:
    """A timestamp as read back: SQLite gives text without a zone (stored in UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_renders_and_downloads_keep_their_values_on_sqlite(tmp_path):
    _renders_and_downloads_keep_their_values(f"sqlite:///{tmp_path / 'old.sqlite3'}")


def test_renders_and_downloads_keep_their_values_on_postgres():
    with postgres_schema() as url:
        _renders_and_downloads_keep_their_values(url)
