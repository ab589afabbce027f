"""SQLAlchemy models: users, revoked tokens, jobs, their chunks, per-frame detections
and login rate-limit counters."""

from detector.models.base import Base, utcnow
from detector.models.job import (
    FINISHED_STATUSES,
    Chunk,
    ChunkStatus,
    FrameDetections,
    Job,
    JobStatus,
)
from detector.models.ratelimit import RateLimitCounter
from detector.models.user import RevokedToken, User

__all__ = [
    "FINISHED_STATUSES",
    "Base",
    "Chunk",
    "ChunkStatus",
    "FrameDetections",
    "Job",
    "JobStatus",
    "RateLimitCounter",
    "RevokedToken",
    "User",
    "utcnow",
]
