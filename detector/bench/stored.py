"""A job written straight into the database, as the pipeline leaves it after detection:
its owner, the job row and its analysed frames. For benchmarks and tests of the steps
that read stored frames (tracking, analytics, merging, the watchdog)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

from sqlalchemy import insert, select

from detector.models import FrameDetections, Job, JobStatus, User
from detector.pipeline.lease import AnySession

#: Stored frames per INSERT.
FRAMES_PER_INSERT = 1_000

#: A stored frame: its index in the video, its timestamp (seconds) and its objects.
StoredFrame = tuple[int, float, list[dict[str, Any]]]


def user_id(session: AnySession, username: str) -> int:
    """The id of the user ``username``, added (with no usable password) if there is none."""
    found = session.scalar(select(User.id).where(User.username == username))
    if found is not None:
        return found
    user = User(username=username, password_hash="x")
    session.add(user)
    session.flush()
    return user.id


def stored_job(
    session: AnySession,
    frames: Iterable[StoredFrame] = (),
    *,
    status: JobStatus = JobStatus.SUCCEEDED,
    owner: str = "bench",
    **fields: Any,
) -> Job:
    """A job of ``owner``'s (added if new) in ``status``, with ``frames`` stored, flushed
    but not committed.

    The job has been dispatched, holds a stand-in storage key and a score threshold of
    0.5; ``fields`` set or override any of the job's columns (``owner_id`` among them).
    """
    if "owner_id" not in fields:
        fields["owner_id"] = user_id(session, owner)
    job = Job(
        **{
            "original_filename": "v.mp4",
            "storage_key": "0" * 32,
            "status": status,
            "score_threshold": 0.5,
            "dispatched": True,
            **fields,
        }
    )
    session.add(job)
    session.flush()
    rows = ({"job_id": job.id, "index": i, "timestamp": t, "objects": o} for i, t, o in frames)
    while batch := list(islice(rows, FRAMES_PER_INSERT)):
        session.execute(insert(FrameDetections), batch)
    return job
