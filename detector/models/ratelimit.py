"""Login rate-limit counters, shared by every API process (see detector.auth.ratelimit)."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from detector.models.base import Base


class RateLimitCounter(Base):
    """One rate-limit window of one client: its hits so far and when it ends."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    # Seconds since the epoch: the same number on every host and database.
    expires_at: Mapped[float] = mapped_column(Float, index=True)
