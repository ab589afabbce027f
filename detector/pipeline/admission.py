"""Whether a queued job may start now, and why it waits when it may not.

A job waits, queued, while its owner's processing jobs and older queued jobs
fill MAX_PROCESSING_JOBS_PER_USER (``slot``: it starts when one of them ends,
in the order its owner sent them), or while no online worker serves its model (``worker``:
the watchdog looks again each interval, and fails it after JOB_STALL_SECONDS).

A job waiting for a worker keeps its place in line before its owner's later jobs
of the same model (they need the same worker; when it comes online, the oldest
starts first, even if a younger one's planner was the first to see it), and holds
none before jobs of other models, which it must not block.

A processing job none of whose chunks runs yet waits for a detector of its
model, behind other jobs' chunks; its `waiting` message says behind how many.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import aliased

from detector.config import current_settings
from detector.db import db
from detector.models import WAIT_SLOT, WAIT_WORKER, Chunk, ChunkStatus, Job, JobStatus
from detector.pipeline.dispatch import processing_count
from detector.pipeline.workers import serving
from detector.runtime.queues import IMPLICIT_MODEL, model_queue


def model_of(job: Job | Any) -> str:
    """The catalog name of the model a job runs (older jobs: the default's)."""
    if job.model_key:
        return str(job.model_key)
    from detector.pipeline.models import current_catalog

    return current_catalog().default or IMPLICIT_MODEL


def wait_reason(job: Job) -> str | None:
    """Why the queued ``job`` may not be planned now (WAIT_WORKER, WAIT_SLOT), or None."""
    if serving(model_queue(model_of(job))) is False:
        return WAIT_WORKER
    limit = current_settings().max_processing_jobs_per_user
    if limit > 0 and processing_count(job.owner_id) + _ahead(job) >= limit:
        return WAIT_SLOT
    return None


def in_line_before(job: Job | Any) -> ColumnElement[int]:
    """The number of the owner's jobs ahead of ``job`` in line, as a SQL expression:
    those queued before it, but for those waiting for a worker of another model."""
    other = aliased(Job)
    return (
        select(func.count())
        .select_from(other)
        .where(
            other.owner_id == job.owner_id,
            other.status == JobStatus.QUEUED,
            or_(
                other.waiting_for.is_(None),
                other.waiting_for == WAIT_SLOT,
                other.model_key.is_not_distinct_from(job.model_key),
            ),
            or_(
                other.created_at < job.created_at,
                (other.created_at == job.created_at) & (other.id < job.id),
            ),
        )
        .scalar_subquery()
    )


def _ahead(job: Job | Any) -> int:
    return int(db.session.scalar(select(in_line_before(job))) or 0)


def queue_position(job: Job | Any) -> int | None:
    """A job waiting for a slot: its place in its owner's line (1: next to start)."""
    if job.status is not JobStatus.QUEUED or job.waiting_for != WAIT_SLOT:
        return None
    return _ahead(job) + 1


def chunks_ahead(job: Job | Any) -> int | None:
    """A processing job none of whose chunks runs yet: how many chunks of other jobs of
    its model, planned before it, are running or waiting (the detectors take them
    first, or most of them: a job's first chunks go before others' later ones when
    CHUNK_PRIORITY is on). None when the job is not waiting for a detector."""
    if job.status is not JobStatus.PROCESSING or not job.dispatched or job.started_at is None:
        return None
    if job.frames_total is not None and job.frames_tracked is not None:
        return None  # detected; tracking
    mine = db.session.execute(
        select(
            func.count().filter(Chunk.status == ChunkStatus.RUNNING),
            func.count().filter(Chunk.status == ChunkStatus.PENDING),
        ).where(Chunk.job_id == job.id)
    ).one()
    if mine[0] or not mine[1]:
        return None  # one of its chunks runs, or none is left to run
    other = aliased(Job)
    ahead = db.session.scalar(
        select(func.count())
        .select_from(Chunk)
        .join(other, other.id == Chunk.job_id)
        .where(
            other.status == JobStatus.PROCESSING,
            other.id != job.id,
            other.model_key.is_not_distinct_from(job.model_key),
            other.started_at <= job.started_at,
            Chunk.status.in_([ChunkStatus.PENDING, ChunkStatus.RUNNING]),
        )
    )
    return int(ahead or 0)


def waiting_message(job: Job | Any, position: int | None) -> str | None:
    """What a queued job, or a processing job whose chunks wait behind other jobs',
    waits for, in words (None when it waits for nothing)."""
    if (ahead := chunks_ahead(job)) is not None:
        return (
            f"waiting for a detector of model {model_of(job)!r}: its chunks are queued behind "
            f"{ahead} chunks of earlier jobs"
        )
    if job.status is not JobStatus.QUEUED or not job.waiting_for:
        return None
    if job.waiting_for == WAIT_WORKER:
        return (
            f"waiting for a worker that serves model {model_of(job)!r}: none is online "
            f"(start one with `detector worker -Q detector --model {model_of(job)}`)"
        )
    limit = current_settings().max_processing_jobs_per_user
    return (
        f"waiting its turn: of your jobs at most {limit} run at once (MAX_PROCESSING_JOBS_PER_USER), "
        f"{processing_count(job.owner_id)} are processing; number {position} in line"
    )
