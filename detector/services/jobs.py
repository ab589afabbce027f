"""Creating, reading, cancelling and deleting detection jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, TypeVar

from sqlalchemy import Integer, Row, Select, Text, bindparam, cast, func, select
from sqlalchemy.orm import selectinload

from detector.db import db
from detector.detection.labels import from_stored, identity_label_set
from detector.models import Chunk, FrameDetections, Job, JobDownload, JobRender, JobStatus
from detector.pipeline import admission, dispatch, quota
from detector.pipeline.results import PageFrame, detections_page_json
from detector.services import models
from detector.services.errors import (
    Conflict,
    InvalidInput,
    JobEnded,
    Misconfigured,
    NotAVideo,
    NotFound,
    QuotaExceeded,
    UnreadableVideo,
)
from detector.services.options import JobOptions, check_selection_fits
from detector.services.quota import keep_room, release_room, reserve_room
from detector.storage import VideoStorage
from detector.video import NotAVideoError, VideoError, probe

log = logging.getLogger(__name__)


def parse_score_threshold(raw: Any, default: float, floor: float) -> float:
    """The job's score threshold from the form field ``raw`` (``default`` when it is absent).

    ``floor`` is the model's own minimum score (DETECTOR_MIN_SCORE): the model
    drops every object below it, so a lower threshold is refused rather than
    silently raised to the floor.
    """
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not floor <= value <= 1.0:  # also refuses NaN
        raise InvalidInput(
            f"score_threshold must be a number from {floor:g} to 1; {floor:g} is the lowest "
            f"score the model reports (DETECTOR_MIN_SCORE)"
        )
    return value


def configured_model(model: str | None = None) -> str:
    """The exact model a job for ``model`` (a catalog name; None: the default) runs, as it
    records it from creation on: backend, model and the weights' identity
    (detector.detection.model_identity).

    Raises:
        Misconfigured: the weights cannot be identified here (a local file the API cannot read).
    """
    return models.identity(model)


def configured_labels(model: str | None = None) -> Mapping[int, str]:
    """Class id -> label of every class the model ``model`` (None: the default) reports.

    Raises:
        Misconfigured: the settings name no model this service knows.
    """
    return models.labels(model)


def job_labels(job: Job | Row[Any]) -> Mapping[int, str]:
    """Class id -> label of the model ``job`` (an object or a row) ran: the label set it
    kept when it was created, whatever the catalog declares now.

    A job from before jobs kept theirs: the labels its model's identity tells
    (detector.detection.labels.identity_label_set), else those of its model in the
    catalog; empty when neither knows them any more (its objects still carry their
    labels), never an error.
    """
    if job.labels is not None:
        return from_stored(job.labels)
    known = identity_label_set(job.model_name)
    if known is not None:
        return known
    try:
        return models.labels(job.model_key)
    except Misconfigured:
        return {}


def save_new_job(
    job: Job,
    attach: Callable[[Job], None] | None = None,
    on_failure: Callable[[], None] | None = None,
) -> None:
    """Commit a new job; ``attach(job)`` runs in its transaction first (an idempotency
    record, say). On any error the transaction is rolled back, ``on_failure()`` undoes
    what was kept outside the database (the stored video), and the error is raised."""
    session = db.session
    session.add(job)
    try:
        if attach is not None:
            attach(job)
        session.commit()
    except Exception:
        session.rollback()
        if on_failure is not None:
            on_failure()
        raise


def create_job(
    *,
    owner_id: int,
    upload: IO[bytes],
    filename: str,
    score_threshold: float,
    storage: VideoStorage,
    max_pixels: int,
    model_name: str,
    attach: Callable[[Job], None] | None = None,
    callback_url: str | None = None,
    options: JobOptions | None = None,
) -> Job:
    """Probe an upload (already written into storage's incoming area), keep it,
    commit the job, then send ``process_video``. A refused upload leaves nothing:
    one that would take its owner past STORAGE_QUOTA_MB is refused before all else,
    by a reservation of its bytes that checks the quota and takes the room in one
    step; the job's commit turns it into used bytes, a refusal gives it back.

    ``attach(job)``, when given, runs in the job's transaction before its commit
    (detector.services.idempotency adds its key record there); a failed commit
    leaves nothing either, and re-raises. ``options`` say what is analysed; a
    span that starts after the video's end is refused here."""
    options = options or JobOptions()
    size = storage.upload_size(upload)
    try:
        reservation = reserve_room(owner_id, size)
    except QuotaExceeded:
        storage.discard_upload(upload)
        raise
    try:
        info = probe(storage.upload_source(upload), max_pixels=max_pixels)
    except VideoError as exc:
        storage.discard_upload(upload)
        release_room(reservation)
        if isinstance(exc, NotAVideoError):
            raise NotAVideo(f"not a video: {exc}") from None
        raise UnreadableVideo(f"unusable video: {exc}") from None
    try:
        check_selection_fits(options.selection, info.duration)
    except InvalidInput:
        storage.discard_upload(upload)
        release_room(reservation)
        raise
    key = storage.commit_upload(upload)
    job = Job(
        owner_id=owner_id,
        original_filename=(filename or "video")[:255],
        storage_key=key,
        video_bytes=size,
        status=JobStatus.QUEUED,
        score_threshold=score_threshold,
        model_name=model_name,
        callback_url=callback_url,
        **options.as_columns(),
        **info.as_dict(),
    )

    def keep(job: Job) -> None:
        keep_room(reservation, size)  # the reserved bytes become used ones with the job
        if attach is not None:
            attach(job)

    def undo() -> None:
        storage.delete(key)
        release_room(reservation)

    save_new_job(job, keep, on_failure=undo)
    dispatch.send_process_video(job.id)
    return job


# The statements of the hot read paths (a polled job, paged detections) are built
# once: building a select costs more than SQLite takes to run it. They run on the
# session's connection and give plain rows (a job row has Job's attribute names):
# loading ORM objects cost more than the queries themselves.
_FRAMES_DONE = (
    select(func.coalesce(func.sum(Chunk.frames_done), 0)).where(Chunk.job_id == Job.id).scalar_subquery()
)
_JOB = select(Job).where(Job.id == bindparam("job_id"))
_JOB_ROW = select(*Job.__table__.c).where(Job.id == bindparam("job_id"))
_JOB_ROW_WITH_PROGRESS = (
    _JOB_ROW.add_columns(
        _FRAMES_DONE.label("chunks_frames_done"),
        JobRender.status.label("render_status"),
        JobRender.frames_done.label("render_frames_done"),
        JobRender.error.label("render_error"),
        JobDownload.bytes_received.label("bytes_downloaded"),
        JobDownload.bytes_total.label("bytes_total"),
    )
    .outerjoin(JobRender, JobRender.job_id == Job.id)
    .outerjoin(JobDownload, JobDownload.job_id == Job.id)
)
_FRAME_PAGE = (
    select(FrameDetections.index, FrameDetections.timestamp, cast(FrameDetections.objects, Text))
    .where(FrameDetections.job_id == bindparam("job_id"), FrameDetections.index >= bindparam("start"))
    .order_by(FrameDetections.index)
    .limit(bindparam("limit", type_=Integer))
)


_J = TypeVar("_J", Job, Row[Any])


def _owned(job: _J | None, owner_id: int, job_id: str) -> _J:
    """Someone else's job is "not found", exactly like a missing one."""
    if job is None or job.owner_id != owner_id:
        raise NotFound(f"job {job_id} not found")
    return job


def _valid_id(job_id: Any) -> bool:
    return isinstance(job_id, str) and len(job_id) <= 32


def get_job(owner_id: int, job_id: str) -> Job:
    """The caller's job."""
    job = db.session.scalars(_JOB, {"job_id": job_id}).first() if _valid_id(job_id) else None
    return _owned(job, owner_id, job_id)


def _job_row(statement: Select[Any], owner_id: int, job_id: str) -> Row[Any]:
    """The caller's job as a read-only row."""
    row: Row[Any] | None = None
    if _valid_id(job_id):
        row = db.session.connection().execute(statement, {"job_id": job_id}).first()
    return _owned(row, owner_id, job_id)


def get_job_with_progress(owner_id: int, job_id: str) -> tuple[Row[Any], int]:
    """The caller's job (a read-only row, with its render's ``render_status``,
    ``render_frames_done`` and ``render_error`` and its download's ``bytes_downloaded``
    and ``bytes_total``) and its frames done so far, in one query."""
    job = _job_row(_JOB_ROW_WITH_PROGRESS, owner_id, job_id)
    return job, _frames_done(job, job.chunks_frames_done)


def _frames_done(job: Job | Row[Any], chunks_sum: int | None) -> int:
    """All of a succeeded job's frames; otherwise what its chunks have done so far."""
    return (job.frames_total or 0) if job.status is JobStatus.SUCCEEDED else int(chunks_sum or 0)


def list_jobs(owner_id: int, page: int, per_page: int) -> tuple[list[Job], int]:
    session = db.session
    total = session.scalar(select(func.count()).select_from(Job).where(Job.owner_id == owner_id))
    jobs = session.scalars(
        select(Job)
        .options(selectinload(Job.render), selectinload(Job.download))
        .where(Job.owner_id == owner_id)
        .order_by(Job.created_at.desc(), Job.id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(jobs), int(total or 0)


def frames_done(jobs: Sequence[Job | Row[Any]]) -> dict[str, int]:
    """Frames detected so far for each job, in one query (a list page needs them all)."""
    running = [job.id for job in jobs if job.status is not JobStatus.SUCCEEDED]
    sums: dict[str, int] = {}
    if running:
        rows = db.session.execute(
            select(Chunk.job_id, func.sum(Chunk.frames_done))
            .where(Chunk.job_id.in_(running))
            .group_by(Chunk.job_id)
        )
        sums = {job_id: total for job_id, total in rows}
    return {job.id: _frames_done(job, sums.get(job.id)) for job in jobs}


def waiting(job: Job | Row[Any]) -> tuple[int | None, str | None]:
    """Why the job waits, if it does: its place in its owner's line (a queued job
    waiting for a slot) and what it waits for, in words."""
    position = admission.queue_position(job)
    return position, admission.waiting_message(job, position)


def detections_page(owner_id: int, job_id: str, start: int, limit: int) -> str:
    """A page of a succeeded job's detections as the API's JSON text (`get_detections`)."""
    job, frames, following = get_detections(owner_id, job_id, start, limit)
    return detections_page_json(
        job_id=job.id,
        frames_total=job.frames_total or 0,
        start=start,
        limit=limit,
        frames=frames,
        next_start=following,
    )


def get_detections(
    owner_id: int, job_id: str, start: int, limit: int
) -> tuple[Row[Any], list[PageFrame], int | None]:
    """A page of a succeeded job's analysed frames from frame index ``start`` on,
    their objects as the stored JSON text, and the index of the next page's first
    frame (None after the last frame).

    The objects stay the JSON text the worker stored: the API sends them on as
    they are instead of parsing and re-encoding every box.
    """
    job = _job_row(_JOB_ROW, owner_id, job_id)
    if job.status is not JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status.value}; detections are ready when it has succeeded")
    rows = db.session.connection().execute(
        _FRAME_PAGE, {"job_id": job.id, "start": start, "limit": limit + 1}
    )
    frames: list[PageFrame] = [(index, timestamp, text) for index, timestamp, text in rows]
    following = frames.pop()[0] if len(frames) > limit else None
    return job, frames, following


def cancel_job(owner_id: int, job_id: str) -> Job:
    """Cancel the user's job; the job as cancelled.

    Raises:
        JobEnded: the job had already ended (also when it ended a moment before
            this cancel's update: whichever change came first stands).
    """
    job = get_job(owner_id, job_id)
    cancelled = not job.status.finished and dispatch.stop_job(
        job.id, JobStatus.CANCELLED, "cancelled by its owner"
    )
    db.session.refresh(job)
    if not cancelled:
        raise JobEnded(job_id, job.status.value)
    return job


def delete_job(owner_id: int, job_id: str, storage: VideoStorage) -> None:
    """Delete a job, its stored video, its annotated video and its detections; a running
    job is cancelled first."""
    job = get_job(owner_id, job_id)
    if not job.status.finished:
        dispatch.stop_job(job.id, JobStatus.CANCELLED, "deleted by its owner")
    keys = [job.storage_key, job.render.key if job.render is not None else None]
    session = db.session
    quota.forget_job(session, job.id)
    session.delete(session.get(Job, job.id))
    session.commit()
    for key in keys:
        if key:
            storage.delete(key)
    log.info("job=%s deleted", job_id)
