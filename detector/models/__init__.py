"""SQLAlchemy models: users, revoked tokens, jobs, their chunks, per-frame detections,
tracks, login rate-limit counters, API keys and idempotency keys, refresh-token families,
storage reservations, and each model's last progress."""

from detector.models.activity import ModelActivity
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
from detector.models.storage import StorageReservation
from detector.models.user import RevokedToken, TokenFamily, User
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
    "ModelActivity",
    "RateLimitCounter",
    "RenderStatus",
    "RevokedToken",
    "StorageReservation",
    "TokenFamily",
    "Track",
    "User",
    "WebhookEvent",
    "WebhookSecret",
    "utcnow",
]
