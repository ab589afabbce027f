"""Reading a succeeded job's results beyond its detections pages: its tracks, and
the whole job as one file in a standard format (detector.exports)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from detector.db import db
from detector.exports import ExportError, ExportSource, TracksRequiredError, export, filename, media_type
from detector.models import Job, JobStatus, Track
from detector.pipeline.stored import stored_frames
from detector.services.errors import Conflict, InvalidInput
from detector.services.jobs import get_job, job_labels


def _succeeded(owner_id: int, job_id: str, what: str) -> Job:
    job = get_job(owner_id, job_id)
    if job.status is not JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status.value}; {what} are ready when it has succeeded")
    return job


def get_tracks(owner_id: int, job_id: str, start: int, limit: int) -> tuple[Job, list[Track], int | None]:
    """A page of a succeeded job's tracks from track id ``start`` on, and the next
    page's first track id (None after the last)."""
    job = _succeeded(owner_id, job_id, "tracks")
    tracks = list(
        db.session.scalars(
            select(Track)
            .where(Track.job_id == job.id, Track.track_id >= start)
            .order_by(Track.track_id)
            .limit(limit + 1)
        )
    )
    following = tracks.pop().track_id if len(tracks) > limit else None
    return job, tracks, following


def track_dict(track: Track) -> dict[str, Any]:
    return {
        "track_id": track.track_id,
        "label": track.label,
        "class_id": track.class_id,
        "first_frame": track.first_frame,
        "last_frame": track.last_frame,
        "first_timestamp": track.first_timestamp,
        "last_timestamp": track.last_timestamp,
        "frames": track.frames,
        "mean_score": track.mean_score,
        "best_frame": track.best_frame,
        "best_score": track.best_score,
        "best_box": track.best_box,
    }


def labels_in_objects(job_id: str) -> dict[int, str]:
    """Class id -> label of the objects a job stored: the label set of a job that kept
    none whose model no longer tells its own (see ``job_labels``)."""
    found: dict[int, str] = {}
    for frame in stored_frames(job_id):
        detections = frame.detections
        for class_id, label in zip(detections.class_id.tolist(), detections.label.tolist(), strict=True):
            found.setdefault(class_id, label)
    return found


class Export:
    """A job's export, ready to stream: its media type, file name and text pieces."""

    def __init__(self, fmt: str, source: ExportSource, job_id: str) -> None:
        self.pieces = export(fmt, source, stored_frames(job_id))
        self.media_type = media_type(fmt)
        self.filename = filename(fmt, source.name)


def export_job(owner_id: int, job_id: str, fmt: str) -> Export:
    """A succeeded job's export in format ``fmt``, checked before a byte is sent.

    Raises:
        InvalidInput: an unknown format.
        Conflict: the job has not succeeded, or the format needs tracks it has not.
    """
    job = _succeeded(owner_id, job_id, "exports")
    source = ExportSource(
        name=job.original_filename,
        width=job.width or 0,
        height=job.height or 0,
        frame_count=job.frame_count or 0,
        fps=job.fps or 0.0,
        labels=job_labels(job) or labels_in_objects(job.id),
        tracked=bool(job.track),
    )
    try:
        return Export(fmt, source, job.id)
    except TracksRequiredError as exc:
        raise Conflict(str(exc)) from None
    except ExportError as exc:
        raise InvalidInput(str(exc)) from None
