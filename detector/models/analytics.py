from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column

from detector.models.base import Base, JSONType, UTCDateTime, utcnow


class AnalyticsStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AnalyticsStage(enum.StrEnum):
    """What a run is doing now, for its progress: tracking an untracked job first,
    reading and analysing its tracks, done or failed."""

    QUEUED = "queued"
    TRACKING = "tracking"
    ANALYSING = "analysing"
    DONE = "done"
    FAILED = "failed"


class Analytics(Base):
    """One analytics spec of a job (detector.analytics) and its results.

    ``id`` is the spec's identity (`AnalyticsSpec.spec_id`): the primary key
    (job, id) makes the same spec of the same job one row, whoever sends it first.
    The results and the heatmap's counts are loaded only when read.
    """

    __tablename__ = "analytics"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # The canonical spec (AnalyticsSpec.as_json).
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[AnalyticsStatus] = mapped_column(
        Enum(
            AnalyticsStatus,
            name="analytics_status",
            values_callable=lambda e: [m.value for m in e],
            validate_strings=True,
        ),
        default=AnalyticsStatus.QUEUED,
    )
    stage: Mapped[str] = mapped_column(String(16), default=AnalyticsStage.QUEUED.value)
    # Progress: analysed frames read (and tracked, for a job tracked first) of frames_total.
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    frames_total: Mapped[int | None] = mapped_column(Integer)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Drawn in the job's annotated video: the analytics its last render request named
    # (at most one of a job's; detector.pipeline.rendering asks for its overlay).
    drawn: Mapped[bool] = mapped_column(default=False)
    results: Mapped[dict[str, Any] | None] = deferred(mapped_column(JSONType))
    heatmap: Mapped[dict[str, Any] | None] = deferred(mapped_column(JSONType))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def progress(self) -> float:
        """0 to 1."""
        if self.status is AnalyticsStatus.SUCCEEDED:
            return 1.0
        if not self.frames_total:
            return 0.0
        return min(1.0, self.frames_done / self.frames_total)
