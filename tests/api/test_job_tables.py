"""A job's render and download live in their own tables (job_renders, job_downloads);
the API shows them as fields of the job, read in bulk for a list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, func, select

from detector.db import db
from detector.models import Job, JobDownload, JobRender, JobStatus, RenderStatus, User, utcnow
from tests.conftest import Auth


def _jobs(app: Any, username: str, count: int, start: int = 0) -> list[str]:
    """Jobs ``start`` to ``start + count`` of the user: the odd ones with a render being
    drawn, the even ones with a failed render, and every third one from a URL, with
    bytes downloaded."""
    ids = []
    with app.app_context():
        owner = db.session.scalar(select(User.id).where(User.username == username))
        for n in range(start, start + count):
            job = Job(
                owner_id=owner,
                original_filename=f"v{n}.mp4",
                storage_key=f"k{n}",
                status=JobStatus.SUCCEEDED,
                score_threshold=0.5,
                frame_count=100,
            )
            if n % 2:
                job.render = JobRender(status=RenderStatus.RENDERING, frames_done=n)
            else:
                job.render = JobRender(status=RenderStatus.FAILED, error=f"broke {n}")
            if n % 3 == 0:
                job.source_url = f"https://example.com/v{n}.mp4"
                job.download = JobDownload(bytes_received=1000 + n, bytes_total=5000, progress_at=utcnow())
            db.session.add(job)
            db.session.flush()
            ids.append(job.id)
        db.session.commit()
    return ids


def _expected(n: int) -> dict[str, Any]:
    render = (
        {"status": "rendering", "frames_done": n, "percent": float(n), "error": None, "url": None}
        if n % 2
        else {"status": "failed", "frames_done": 0, "percent": 0.0, "error": f"broke {n}", "url": None}
    )
    downloaded = (1000 + n, 5000) if n % 3 == 0 else (None, None)
    return {"render": render, "bytes": downloaded}


def _shown(job: dict[str, Any]) -> dict[str, Any]:
    return {"render": job["render"], "bytes": (job["bytes_downloaded"], job["bytes_total"])}


def _statements(app: Any, call: Any) -> tuple[Any, int]:
    """``call()``'s result and the SQL statements it ran."""
    count = 0

    def counted(*_: Any) -> None:
        nonlocal count
        count += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", counted)
    try:
        result = call()
    finally:
        event.remove(engine, "before_cursor_execute", counted)
    return result, count


def test_a_list_shows_each_jobs_render_and_download_in_a_fixed_number_of_queries(app, client, auth: Auth):
    headers = auth.headers()
    ids = _jobs(app, "alice", 2)
    few, few_statements = _statements(app, lambda: client.get("/api/jobs?per_page=50", headers=headers))
    ids += _jobs(app, "alice", 5, start=2)
    many, many_statements = _statements(app, lambda: client.get("/api/jobs?per_page=50", headers=headers))
    assert len(few.json["jobs"]) == 2 and len(many.json["jobs"]) == 7
    assert many_statements == few_statements  # not one query more per job
    by_id = {job["id"]: job for job in many.json["jobs"]}
    assert [_shown(by_id[job_id]) for job_id in ids] == [_expected(n) for n in range(7)]


def test_one_job_shows_the_same_render_and_download_as_the_list(app, client, auth: Auth):
    headers = auth.headers()
    ids = _jobs(app, "alice", 4)
    listed = {job["id"]: job for job in client.get("/api/jobs", headers=headers).json["jobs"]}
    for n, job_id in enumerate(ids):
        one = client.get(f"/api/jobs/{job_id}", headers=headers).json
        assert _shown(one) == _shown(listed[job_id]) == _expected(n)


def test_an_upload_without_a_render_shows_neither(app, client, auth: Auth):
    headers = auth.headers()
    with app.app_context():
        owner = db.session.scalar(select(User.id).where(User.username == "alice"))
        job = Job(owner_id=owner, original_filename="v.mp4", storage_key="k", score_threshold=0.5)
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    one = client.get(f"/api/jobs/{job_id}", headers=headers).json
    assert _shown(one) == {"render": None, "bytes": (None, None)}


def test_deleting_a_job_deletes_its_render_and_download(app, client, auth: Auth):
    headers = auth.headers()
    [job_id] = _jobs(app, "alice", 1)  # n = 0: a failed render and a download
    assert client.delete(f"/api/jobs/{job_id}", headers=headers).status_code == 204
    with app.app_context():
        left = [db.session.scalar(select(func.count()).select_from(m)) for m in (JobRender, JobDownload)]
    assert left == [0, 0]


def test_another_users_render_and_download_are_not_shown(app, client, auth: Auth):
    auth.headers("bob")
    _jobs(app, "bob", 3)
    headers = auth.headers()
    assert client.get("/api/jobs", headers=headers).json["jobs"] == []
