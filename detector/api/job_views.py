"""A job as the API shows it: the bodies that fill detector.api.job_schema's models."""

from __future__ import annotations

from typing import Any

from flask import url_for
from sqlalchemy import Row

from detector.models import Job, JobStatus, RenderStatus
from detector.services import jobs as job_service
from detector.services import models


def stage(job: Job | Row[Any], done: int) -> str:
    """What the job is doing now (one of job_schema.STAGES)."""
    if job.status.finished:
        return "finished"
    if job.status is not JobStatus.PROCESSING:
        return str(job.status.value)
    if not job.dispatched:
        return "planning"
    if job.frames_total is None or done < job.frames_total:
        return "detecting"
    return "tracking" if job.frames_tracked is not None else "merging"


def options_dict(job: Job | Row[Any]) -> dict[str, Any]:
    """The job's options as the API shows them (classes by label)."""
    classes = None
    if job.classes is not None:
        labels = job_service.job_labels(job)
        classes = [labels.get(class_id, str(class_id)) for class_id in job.classes]
    return {
        "sample_fps": job.sample_fps,
        "frame_stride": job.frame_stride,
        "start": job.start_time,
        "end": job.end_time,
        "classes": classes,
        "track": bool(job.track),
        "model": job.model_key or models.catalog().default,
    }


def _render(job: Job | Row[Any]) -> tuple[RenderStatus | None, int, str | None]:
    """The status, frames done and error of the job's render: of its `JobRender` (an
    object), or of the columns a job row carries for it (detector.services.jobs)."""
    if isinstance(job, Job):
        render = job.render
        return (render.status, render.frames_done, render.error) if render else (None, 0, None)
    return job.render_status, job.render_frames_done or 0, job.render_error


def _download(job: Job | Row[Any]) -> tuple[int | None, int | None]:
    """The bytes downloaded so far and announced of a job from a source_url (None for an upload)."""
    if isinstance(job, Job):
        download = job.download
        return (download.bytes_received, download.bytes_total) if download else (None, None)
    return job.bytes_downloaded, job.bytes_total


def render_dict(job: Job | Row[Any]) -> dict[str, Any] | None:
    """The job's annotated video as the API shows it; None when none was asked for."""
    status, done, error = _render(job)
    if status is None:
        return None
    total = job.frame_count
    succeeded = status is RenderStatus.SUCCEEDED
    return {
        "status": status.value,
        "frames_done": done,
        "percent": 100.0 if succeeded else (round(min(100.0, 100.0 * done / total), 1) if total else 0.0),
        "error": error,
        "url": url_for("api.jobs_video_annotated", job_id=job.id)
        if succeeded and job.video_deleted_at is None
        else None,
    }


def job_dict(job: Job | Row[Any], done: int | None = None) -> dict[str, Any]:
    """The job (an object or a row) as the API shows it; ``done`` is its frames done, when known."""
    if done is None:
        done = job_service.frames_done([job])[job.id]
    total = job.frames_total
    bytes_downloaded, bytes_total = _download(job)
    return {
        "id": job.id,
        "status": job.status.value,
        "filename": job.original_filename,
        "score_threshold": job.score_threshold,
        "model": job.model_name,
        "queue_position": (waiting := job_service.waiting(job))[0],
        "waiting": waiting[1],
        "progress": {
            "frames_done": done,
            "frames_total": total,
            "percent": round(100.0 * done / total, 1) if total else 0.0,
            "stage": stage(job, done),
            "frames_tracked": job.frames_tracked,
        },
        "options": options_dict(job),
        "tracks_total": job.tracks_total,
        "video": {
            "codec": job.codec,
            "width": job.width,
            "height": job.height,
            "fps": job.fps,
            "frame_count": job.frame_count,
            "duration": job.duration,
            "rotation": job.rotation,
            "expires_at": job.video_expires_at.isoformat() if job.video_expires_at else None,
            "deleted_at": job.video_deleted_at.isoformat() if job.video_deleted_at else None,
        },
        "objects_total": job.objects_total,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "source_url": job.source_url,
        "bytes_downloaded": bytes_downloaded,
        "bytes_total": bytes_total,
        "callback_url": job.callback_url,
        "detections_url": url_for("api.jobs_detections", job_id=job.id),
        "tracks_url": url_for("api.jobs_tracks", job_id=job.id),
        "render": render_dict(job),
    }
