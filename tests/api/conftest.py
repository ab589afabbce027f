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


def render_row(app: Any, job_id: str) -> Any:
    """The job's render (its job_renders row) as the database has it now, detached."""
    from detector.db import db
    from detector.models import JobRender

    with app.app_context():
        render = db.session.get(JobRender, job_id)
        db.session.expunge(render)
        return render


def update_render(app: Any, job_id: str, **values: Any) -> None:
    """Set the columns of the job's render directly, as a worker would have."""
    from detector.db import db
    from detector.models import JobRender

    with app.app_context():
        db.session.execute(JobRender.__table__.update().where(JobRender.job_id == job_id).values(**values))
        db.session.commit()


def download_row(app: Any, job_id: str) -> Any:
    """The job's download (its job_downloads row) as the database has it now, detached."""
    from detector.db import db
    from detector.models import JobDownload

    with app.app_context():
        download = db.session.get(JobDownload, job_id)
        db.session.expunge(download)
        return download


def update_download(app: Any, job_id: str, **values: Any) -> None:
    """Set the columns of the job's download directly, as a worker would have."""
    from detector.db import db
    from detector.models import JobDownload

    with app.app_context():
        db.session.execute(
            JobDownload.__table__.update().where(JobDownload.job_id == job_id).values(**values)
        )
        db.session.commit()
