"""The real detector worker with faults injected on purpose: for tests/pipeline/test_faults.py only.

Run as ``celery -A tests.pipeline.fault_worker worker -Q detector ...``. It is
``detector.worker`` (same Celery app, tasks and settings) with
``detector.pipeline.chunks.detect_range`` wrapped. A job asks for a fault by the
name of its uploaded file, ``<fault>-<chunk index>.mp4``; after the first batch of
that chunk has been detected and its progress stored, the process:

- ``crash-<i>``: exits at once with ``os._exit(1)``, on every delivery (a poison
  chunk: a segfault or an out-of-memory kill, as the pool sees it);
- ``raise-<i>``: raises ``RuntimeError("injected failure in chunk <i>")``;
- ``badstore-<i>``: returns the chunk's frames with its first frame twice, so
  that storing them fails in the database (a duplicate key) after detection, outside
  the task's own error handling: the chord's error callback must fail the job;
- ``hold-<i>``: on the chunk's first delivery only, writes its pid to
  ``$FAULT_DIR/<job id>.held`` and waits until ``$FAULT_DIR/<job id>.release``
  exists (at most ``FAULT_HOLD_SECONDS``, default 120), so that a test can act
  while the chunk is deterministically mid-chunk (running, some frames done).

Any other file name runs normally. Nothing in the service knows about this module.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from celery import current_task
from sqlalchemy import select

import detector.worker
from detector.db import db
from detector.detection import AnalysedFrame
from detector.models import Job
from detector.pipeline import chunks

app = celery = detector.worker.app

FAULT_DIR = Path(os.environ.get("FAULT_DIR", "."))
HOLD_SECONDS = float(os.environ.get("FAULT_HOLD_SECONDS", "120"))
_FAULT = re.compile(r"^(crash|raise|hold|badstore)-(\d+)\.mp4$")


def _hold(job_id: str) -> None:
    held = FAULT_DIR / f"{job_id}.held"
    if held.exists():
        return  # held once already: a redelivery runs through
    held.write_text(str(os.getpid()))
    release = FAULT_DIR / f"{job_id}.release"
    deadline = time.monotonic() + HOLD_SECONDS
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _fault_for(job_id: str, chunk: int) -> str | None:
    filename = db.session.scalar(select(Job.original_filename).where(Job.id == job_id)) or ""
    db.session.rollback()
    match = _FAULT.match(filename)
    return match[1] if match is not None and int(match[2]) == chunk else None


def _fault(job_id: str, chunk: int) -> None:
    fault = _fault_for(job_id, chunk)
    if fault == "crash":
        os._exit(1)
    if fault == "raise":
        raise RuntimeError(f"injected failure in chunk {chunk}")
    if fault == "hold":
        _hold(job_id)


_real_detect_range = chunks.detect_range


def _detect_range(*args: Any, on_batch: Any = None, **kwargs: Any) -> list[AnalysedFrame]:
    job_id, chunk = current_task.request.args[:2]  # detect_frames(job_id, chunk_index, start, end)
    first_batch = True

    def hooked(frames_done: int) -> None:
        nonlocal first_batch
        if on_batch is not None:
            on_batch(frames_done)
        if first_batch:
            first_batch = False
            _fault(job_id, int(chunk))

    frames = _real_detect_range(*args, on_batch=hooked, **kwargs)
    if _fault_for(job_id, int(chunk)) == "badstore":
        return [*frames, frames[0]]
    return frames


chunks.detect_range = _detect_range
