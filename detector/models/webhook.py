"""Completion webhooks: each user's signing secret, and each job event with its attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from detector.models.base import Base, JSONType, UTCDateTime, utcnow


class WebhookSecret(Base):
    """The secret that signs a user's webhook events (stored as is: the server must sign)."""

    __tablename__ = "webhook_secrets"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


class WebhookEvent(Base):
    """One event of a job (it ended), POSTed to the job's callback_url until a 2xx or
    WEBHOOK_RETRY_HOURS. ``attempts`` is a list of {"at", "status_code", "error"}."""

    __tablename__ = "webhook_events"
    # One event per job and kind: the database decides when two processes race to record it.
    __table_args__ = (UniqueConstraint("job_id", "type", name="uq_webhook_events_job_id_type"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_event_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # pending (will be tried again), delivered (a 2xx) or failed (gave up).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # How many attempts were recorded: each one is written by a single UPDATE that
    # expects the count it read (detector.pipeline.webhooks), so none is lost.
    attempt_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
