"""Committed migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

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
