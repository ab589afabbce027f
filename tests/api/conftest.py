"""The API tests run on both databases the service supports: embedded SQLite and
PostgreSQL (the local server; skipped when it is down, except under CI=true)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import base_config, postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield base_config(tmp_path)
        return
    with postgres_schema() as url:
        yield base_config(tmp_path, DATABASE_URL=url)


def job_row(app: Any, job_id: str) -> Any:
    """The job as the database has it now, detached from the session."""
    from detector.db import db
    from detector.models import Job

    with app.app_context():
        job = db.session.get(Job, job_id)
        db.session.expunge(job)
        return job


def update_job(app: Any, job_id: str, **values: Any) -> None:
    """Set the job's columns directly, as a worker would have."""
    from detector.db import db
    from detector.models import Job

    with app.app_context():
        db.session.execute(Job.__table__.update().where(Job.id == job_id).values(**values))
        db.session.commit()
