"""Each user's storage quota (STORAGE_QUOTA_MB): what they use, and refusing a video
that would take them past it (detector.pipeline.retention counts the bytes)."""

from __future__ import annotations

from dataclasses import dataclass

from detector.config import current_settings
from detector.pipeline.retention import quota_bytes, quota_refusal, storage_used
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


def check_room(owner_id: int, incoming: int | None = None) -> None:
    """Refuse a video of ``incoming`` bytes that would take the user past their quota;
    without ``incoming`` (a source_url, its size unknown yet), refuse when the user is
    already at or over it.

    Raises:
        QuotaExceeded: the message states the quota, the use and the video's size.
    """
    quota = quota_bytes(current_settings())
    if quota is None:
        return
    refusal = quota_refusal(storage_used(owner_id), quota, incoming)
    if refusal is not None:
        raise QuotaExceeded(refusal)
