"""SQLAlchemy models: users, revoked tokens, jobs, their chunks, per-frame detections,
tracks, login rate-limit counters, API keys and idempotency keys."""

from detector.models.apikey import ApiKey, IdempotencyKey
from detector.models.base import Base, utcnow
from detector.models.job import (
    FINISHED_STATUSES,
    WAIT_SLOT,
    WAIT_WORKER,
    Chunk,
    ChunkStatus,
    FrameDetections,
    Job,
    JobStatus,
    RenderStatus,
    Track,
)
from detector.models.ratelimit import RateLimitCounter
from detector.models.user import RevokedToken, User
from detector.models.webhook import WebhookEvent, WebhookSecret

__all__ = [
    "FINISHED_STATUSES",
    "WAIT_SLOT",
    "WAIT_WORKER",
    "ApiKey",
    "Base",
    "Chunk",
    "ChunkStatus",
    "FrameDetections",
    "IdempotencyKey",
    "Job",
    "JobStatus",
    "RateLimitCounter",
    "RenderStatus",
    "RevokedToken",
    "Track",
    "User",
    "WebhookEvent",
    "WebhookSecret",
    "utcnow",
]
