from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from detector.models.base import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every token carries the generation it was issued in (claim ``gen``); signing out
    # everywhere and changing the password add one, which revokes all earlier tokens.
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Storage against STORAGE_QUOTA_MB (detector.pipeline.quota): the bytes of the user's
    # stored videos and annotated videos, and the bytes set aside for those being stored
    # now (each a StorageReservation row). Changed only by conditional UPDATEs, in the
    # transactions that store and delete videos.
    storage_used_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    storage_reserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class RevokedToken(Base):
    """A JWT revoked by logout; kept until it would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class TokenFamily(Base):
    """One login's chain of refresh tokens (a session): each refresh replaces the
    current token by a new one, and presenting a replaced token revokes the family.

    Each refresh token carries its family's id (claim ``fam``). ``previous_jti`` and
    ``rotated_at`` let the web app's tabs that refreshed at the same moment share one
    rotation (detector.auth.tokens). A revoked family is kept until it would have expired.
    """

    __tablename__ = "token_families"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    current_jti: Mapped[str] = mapped_column(String(64))
    previous_jti: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the current refresh token expires: the family is forgotten after that.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
