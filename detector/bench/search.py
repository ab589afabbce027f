"""The benchmark's search figure: how long ``GET /api/search`` takes for a user with
many jobs and many stored objects.

A database of its own (SQLite under the scratch folder, or the PostgreSQL at
``--search-database-url``) gets, by bulk inserts, one user's ``jobs`` tracked jobs
and as many of another user's, with ``objects`` stored objects between them (frames
of OBJECTS_PER_FRAME objects) and TRACKS_PER_JOB tracks a job: people in every
job, dogs in every fifth, a horse in one job only. The API is called in-process
(Flask's test client, one user's token) for a few searches; the figure reports each
one's median and slowest time over ROUNDS rounds, and the moments its first page held.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OBJECTS_PER_FRAME = 10
TRACKS_PER_JOB = 40
ROUNDS = 20
ROWS_PER_INSERT = 5_000

#: name -> query string of each search timed.
SEARCHES = {
    "common pair (person,dog), first page": "labels=person,dog",
    "common pair, window 2 s, min 1 s": "labels=person,dog&window=2&min_duration=1",
    "one label in every job (person), 100 a page": "labels=person&limit=100",
    "a label in one job (horse)": "labels=horse",
    "a label in no job (zebra)": "labels=zebra",
}


def _tracks(job_id: str, index: int, rng: random.Random) -> list[dict[str, Any]]:
    """A job's tracks: people, a dog in every fifth job, a horse in job 500."""
    labels = ["person"] * TRACKS_PER_JOB
    if index % 5 == 0:
        labels[1::4] = ["dog"] * len(labels[1::4])
    if index == 500:
        labels[2] = "horse"
    tracks = []
    for n, label in enumerate(labels, start=1):
        first = rng.uniform(0, 90)
        last = first + rng.uniform(0.5, 20)
        tracks.append(
            {
                "job_id": job_id,
                "track_id": n,
                "label": label,
                "class_id": 1,
                "first_frame": round(first * 10),
                "last_frame": round(last * 10),
                "first_timestamp": round(first, 3),
                "last_timestamp": round(last, 3),
                "frames": 10,
                "mean_score": 0.8,
            }
        )
    return tracks


def _fill(engine: Any, owners: list[int], jobs: int, objects: int, log: Callable[[str], None]) -> None:
    """Bulk-insert ``jobs`` jobs of each owner, their tracks and frames holding ``objects``
    objects between them."""
    from sqlalchemy import insert

    from detector.models import FrameDetections, Job, JobStatus, Track

    rng = random.Random(1234)
    now = datetime.now(UTC)
    frames_per_job = max(1, objects // (OBJECTS_PER_FRAME * jobs * len(owners)))
    obj = {"label": "person", "class_id": 1, "score": 0.8, "box": [10.0, 20.0, 50.0, 120.0], "track_id": 1}
    started = time.perf_counter()
    job_rows: list[dict[str, Any]] = []
    track_rows: list[dict[str, Any]] = []
    frame_rows: list[dict[str, Any]] = []

    def flush(force: bool = False) -> None:
        with engine.begin() as connection:
            if job_rows and (force or len(job_rows) >= 100):
                connection.execute(insert(Job), job_rows)
                job_rows.clear()
            for table, rows in ((Track, track_rows), (FrameDetections, frame_rows)):
                if rows and (force or len(rows) >= ROWS_PER_INSERT) and not job_rows:
                    connection.execute(insert(table), rows)
                    rows.clear()

    for owner in owners:
        for index in range(jobs):
            job_id = uuid.uuid4().hex
            job_rows.append(
                {
                    "id": job_id,
                    "owner_id": owner,
                    "original_filename": f"video-{index}.mp4",
                    "storage_key": "",
                    "status": JobStatus.SUCCEEDED,
                    "score_threshold": 0.5,
                    "track": True,
                    "fps": 10.0,
                    "frame_count": 1200,
                    "duration": 120.0,
                    "created_at": now - timedelta(minutes=index),
                    "tracks_total": TRACKS_PER_JOB,
                    "objects_total": frames_per_job * OBJECTS_PER_FRAME,
                }
            )
            track_rows.extend(_tracks(job_id, index, rng))
            frame_rows.extend(
                {"job_id": job_id, "index": i, "timestamp": i / 10, "objects": [obj] * OBJECTS_PER_FRAME}
                for i in range(frames_per_job)
            )
            if len(job_rows) >= 100:
                flush(force=True)
    flush(force=True)
    log(
        f"search: {jobs * len(owners)} jobs, {jobs * len(owners) * frames_per_job * OBJECTS_PER_FRAME} "
        f"objects stored in {time.perf_counter() - started:.0f} s"
    )


def search_figure(
    out: Path,
    log: Callable[[str], None],
    *,
    jobs: int = 1000,
    objects: int = 1_000_000,
    database_url: str | None = None,
) -> dict[str, Any]:
    """The search figure (see the module's docstring), as ``{"search": {...}}``."""
    from detector.app import create_app
    from detector.db import db
    from detector.db.migrate import upgrade

    folder = out / "search"
    folder.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{folder / f'search-{uuid.uuid4().hex[:8]}.sqlite3'}"
    upgrade(url)
    app = create_app(
        {
            "DATA_DIR": str(folder),
            "VIDEO_STORAGE": str(folder / "videos"),
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": "filesystem://",
            "CELERY_RESULT_BACKEND": f"file://{folder / 'results'}",
            "RATELIMIT_ENABLED": False,
        }
    )
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    client = app.test_client()
    owners, tokens = [], []
    for name in ("searcher", "neighbour"):
        account = {"username": f"{name}-{uuid.uuid4().hex[:6]}", "password": "bench-password"}
        client.post("/api/auth/register", json=account)
        token = client.post("/api/auth/login", json=account).json["access_token"]  # type: ignore[index]
        tokens.append(token)
        me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        owners.append(int(me.json["id"]))  # type: ignore[index]
    with app.app_context():
        _fill(db.engine, owners, jobs, objects, log)
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    timings: dict[str, Any] = {}
    for name, query in SEARCHES.items():
        seconds = []
        moments = 0
        for _ in range(ROUNDS):
            started = time.perf_counter()
            response = client.get(f"/api/search?{query}", headers=headers)
            seconds.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(
                    f"search {query}: {response.status_code} {response.get_data(as_text=True)}"
                )
            moments = len(response.json["moments"])  # type: ignore[index]
        timings[name] = {
            "query": query,
            "median_ms": round(statistics.median(seconds) * 1000, 1),
            "max_ms": round(max(seconds) * 1000, 1),
            "moments_on_first_page": moments,
        }
        log(f"search {name}: median {timings[name]['median_ms']} ms, max {timings[name]['max_ms']} ms")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return {
        "search": {
            "database": dialect,
            "jobs_per_user": jobs,
            "users": 2,
            "objects": objects,
            "tracks": jobs * 2 * TRACKS_PER_JOB,
            "rounds": ROUNDS,
            "searches": timings,
        }
    }
