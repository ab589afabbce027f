"""Video storage: where uploaded videos live, addressed by key (never by client paths)."""

from detector.storage.base import StorageError, VideoStorage
from detector.storage.local import LocalVideoStorage


def build_storage(location: str) -> VideoStorage:
    """The storage that VIDEO_STORAGE names: ``s3://bucket/prefix`` (detector.storage.s3,
    which imports boto3 only then), else a local directory."""
    if location.startswith("s3://"):
        from detector.storage.s3 import S3VideoStorage

        return S3VideoStorage.from_url(location)
    return LocalVideoStorage(location)


__all__ = ["LocalVideoStorage", "StorageError", "VideoStorage", "build_storage"]
