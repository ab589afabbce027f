"""Each user's storage quota (STORAGE_QUOTA_MB): what they use, and the room a new video
takes, reserved before it is kept (detector.pipeline.quota keeps the counts)."""

from __future__ import annotations

from dataclasses import dataclass

from detector.config import current_settings
from detector.db import db
from detector.pipeline.quota import (
    NoRoom,
    Reservation,
    quota_bytes,
    quota_refusal,
    release,
    reserve,
    settle,
    storage_taken,
    storage_used,
)
from detector.services.errors import QuotaExceeded


@dataclass(frozen=True)
class StorageUse:
    used_bytes: int
    quota_bytes: int | None  # None: unlimited

    def as_dict(self) -> dict[str, int | None]:
        return {"used_bytes": self.used_bytes, "quota_bytes": self.quota_bytes}


def storage_use(owner_id: int) -> StorageUse:
    """The bytes of stored video the user keeps, and their quota."""
    return StorageUse(storage_used(owner_id), quota_bytes(current_settings()))


def check_room(owner_id: int) -> None:
    """Refuse a video of unknown size (a source_url) when the user is already at or over
    their quota, counting what is being stored for them now. Only a first look: the
    download reserves its bytes as they arrive (detector.pipeline.download).

    Raises:
        QuotaExceeded: the message states the quota and the use.
    """
    refusal = quota_refusal(storage_taken(owner_id), quota_bytes(current_settings()))
    if refusal is not None:
        raise QuotaExceeded(refusal)


def reserve_room(owner_id: int, size: int) -> Reservation:
    """Check and take room for a video of ``size`` bytes in one step; `keep_room` in the
    job's transaction turns it into used bytes, `release_room` gives it back.

    Raises:
        QuotaExceeded: the video would take the user past their quota (the message
            states the quota, the use and the video's size).
    """
    try:
        return reserve(owner_id, size)
    except NoRoom as exc:
        raise QuotaExceeded(str(exc)) from None


def keep_room(reservation: Reservation, size: int) -> None:
    """In the transaction that commits the video's job: count its ``size`` bytes as used.

    Raises:
        QuotaExceeded: the reservation was lost (released as abandoned) and the video
            no longer fits; the caller rolls back.
    """
    try:
        settle(db.session, reservation, size)
    except NoRoom as exc:
        raise QuotaExceeded(str(exc)) from None


def release_room(reservation: Reservation) -> None:
    """Give back the room of a video that is not kept."""
    release(reservation)
