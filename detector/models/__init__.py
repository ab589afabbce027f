"""SQLAlchemy models: users, revoked tokens, jobs, their chunks and per-frame detections."""

from detector.models.base import Base, utcnow
from detector.models.job import (
    FINISHED_STATUSES,
    Chunk,
    ChunkStatus,
    FrameDetections,
    Job,
    JobStatus,
)
from detector.models.user import RevokedToken, User

__all__ = [
    "FINISHED_STATUSES",
    "Base",
    "Chunk",
    "ChunkStatus",
    "FrameDetections",
    "Job",
    "JobStatus",
    "RevokedToken",
    "User",
    "utcnow",
]
