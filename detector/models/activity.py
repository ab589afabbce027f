"""When each model's detectors last made progress on a chunk (the watchdog's measure
of whether a model's queue is moving)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from detector.models.base import Base, UTCDateTime, utcnow


class ModelActivity(Base):
    """One row per model of the catalog that has run a chunk: the last time a detector
    serving it reported progress (a batch done, a chunk stored), and which worker.

    One row per model, not per job: the watchdog reads a handful of rows however
    many jobs wait, and a detector adds one small write to each progress report.
    """

    __tablename__ = "model_activity"

    model: Mapped[str] = mapped_column(String(32), primary_key=True)
    progress_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    worker: Mapped[str | None] = mapped_column(String(255))
