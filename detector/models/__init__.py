"""SQLAlchemy models: users, revoked tokens, jobs, their chunks, per-frame detections,
tracks, annotated videos and URL downloads, login rate-limit counters, API keys and idempotency keys, refresh-token families,
storage reservations, each model's last progress, track thumbnails, and analytics."""

from detector.models.activity import ModelActivity
from detector.models.analytics import Analytics, AnalyticsStage, AnalyticsStatus
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
    JobDownload,
    JobRender,
    JobStatus,
    RenderStatus,
    Track,
)
from detector.models.ratelimit import RateLimitCounter
from detector.models.storage import StorageReservation
from detector.models.thumbnail import TrackThumbnail
from detector.models.user import RevokedToken, TokenFamily, User
from detector.models.webhook import WebhookEvent, WebhookSecret

__all__ = [
    "FINISHED_STATUSES",
    "WAIT_SLOT",
    "WAIT_WORKER",
    "Analytics",
    "AnalyticsStage",
    "AnalyticsStatus",
    "ApiKey",
    "Base",
    "Chunk",
    "ChunkStatus",
    "FrameDetections",
    "IdempotencyKey",
    "Job",
    "JobDownload",
    "JobRender",
    "JobStatus",
    "ModelActivity",
    "RateLimitCounter",
    "RenderStatus",
    "RevokedToken",
    "StorageReservation",
    "TokenFamily",
    "Track",
    "TrackThumbnail",
    "User",
    "WebhookEvent",
    "WebhookSecret",
    "utcnow",
]
