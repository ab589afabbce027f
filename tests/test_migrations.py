"""Committed migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from datetime import UTC, datetime

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
