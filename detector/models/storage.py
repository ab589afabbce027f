"""Room set aside in a user's storage quota for a video being stored now."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from detector.models.base import Base, UTCDateTime


class StorageReservation(Base):
    """Bytes of a user's STORAGE_QUOTA_MB held for an upload being probed, a download
    or a render (detector.pipeline.quota). The user's ``storage_reserved_bytes`` is the
    sum of their rows: each row is added and removed in the transaction that changes it.

    ``job_id`` names the job a download or render stores its video for (null for an
    upload, whose job is not made yet); it is no foreign key, so that deleting a job
    cannot drop a row without its bytes. A row past ``expires_at`` whose job is not
    downloading or rendering any more was left by a process that died: the watchdog
    releases it.
    """

    __tablename__ = "storage_reservations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
