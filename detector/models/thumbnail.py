"""Track thumbnails, and the indexes that search moments across a user's jobs."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from detector.models.base import Base
from detector.models.job import Job, Track


class TrackThumbnail(Base):
    """A small JPEG of one track's best-scoring box (detector.tracking.thumbnails), cut
    from ``frame`` by the job's tracking step. It goes with its job: deleting the job
    deletes it, and a new tracking run of the job replaces it."""

    __tablename__ = "track_thumbnails"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    track_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    frame: Mapped[int] = mapped_column(Integer)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)


# GET /api/search (detector.services.search): a user's jobs newest first, then each
# job's tracks of the requested labels.
JOBS_BY_OWNER_NEWEST = Index("ix_jobs_owner_id_created_at", Job.owner_id, Job.created_at, Job.id)
TRACKS_BY_JOB_LABEL = Index("ix_tracks_job_id_label", Track.job_id, Track.label)

__all__ = ["JOBS_BY_OWNER_NEWEST", "TRACKS_BY_JOB_LABEL", "TrackThumbnail"]
