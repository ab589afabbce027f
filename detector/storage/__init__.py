"""Video storage: where uploaded videos live, addressed by key (never by client paths)."""

from detector.storage.local import LocalVideoStorage, StorageError, VideoStorage

__all__ = ["LocalVideoStorage", "StorageError", "VideoStorage"]
