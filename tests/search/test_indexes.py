"""The search's queries use their indexes (SQLite's query plan), so a search costs with
the jobs and tracks it reads, not with everything stored."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine

from detector.db.migrate import upgrade
from detector.services import search as search_service


def _plan(engine, statement) -> str:
    compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        return " | ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))


def test_jobs_by_owner_newest_first_and_tracks_by_job_and_label_use_indexes(tmp_path: Path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'plan.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    statements = []

    class Recorder:
        def execute(self, statement):
            statements.append(statement)
            return self

        def all(self):
            return []

        def __iter__(self):
            return iter([])

    monkeypatch.setattr(search_service.db, "session", Recorder())
    search_service._candidate_jobs(1, ["person", "dog"], None)
    search_service._spans(["a" * 32, "b" * 32], ["person", "dog"])
    jobs, spans = statements
    jobs_plan, spans_plan = _plan(engine, jobs), _plan(engine, spans)
    assert "ix_jobs_owner_id_created_at" in jobs_plan and "ix_tracks_job_id_label" in jobs_plan, jobs_plan
    assert "ix_tracks_job_id_label" in spans_plan, spans_plan
    assert "SCAN" not in spans_plan.replace("SCAN CONSTANT", ""), spans_plan
    engine.dispose()
