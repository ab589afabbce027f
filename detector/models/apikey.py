"""Personal API keys and the Idempotency-Key records of job submits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from detector.models.base import Base, UTCDateTime, utcnow


def new_key_id() -> str:
    return uuid.uuid4().hex


class ApiKey(Base):
    """A user's personal API key. Only the SHA-256 of the secret is kept (see
    detector.auth.apikeys); revoking a key deletes its row."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_key_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The secret's first characters (``dk_live_`` and 8 more), to tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the key may do beyond jobs and keys: space-separated scope names
    # (detector.auth.apikeys.SCOPES); empty for a key made without any.
    scopes: Mapped[str] = mapped_column(String(200), default="", server_default="")


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` a user sent with POST /api/jobs, and the job it made.

    Committed in the same transaction as the job; the unique (owner, key) pair
    makes the loser of two racing submits fail its insert. ``fingerprint`` is a
    hash of the request's parameters and upload. Deleting the job deletes it.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner_id", "key", name="uq_idempotency_keys_owner_id_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
