"""What the service needs from video storage, whichever backend holds the videos."""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO, Protocol

from detector.video import VideoSource

KEY = re.compile(r"^[0-9a-f]{32}$")


class StorageError(LookupError):
    """A key that is malformed or names no stored video."""


class VideoStorage(Protocol):
    """Stored files (uploads, downloads, renders) addressed by random keys.

    An upload is written into a file that ``new_upload`` gives, read where it lies
    (``upload_source``) to probe it, then kept (``commit_upload``) or dropped
    (``discard_upload``). A tool that can only write to a path (the render's
    encoder) writes a ``new_scratch`` file, which ``keep_scratch`` stores.
    """

    def new_upload(self) -> IO[bytes]:
        """A writable file for an incoming upload, inside the storage (no copy later)."""

    def upload_size(self, upload: IO[bytes]) -> int:
        """The bytes written into ``upload`` so far."""

    def upload_source(self, upload: IO[bytes]) -> VideoSource:
        """Finish writing ``upload`` and give what reads it back (to probe it)."""

    def commit_upload(self, upload: IO[bytes]) -> str:
        """Keep a finished upload; returns its new key."""

    def discard_upload(self, upload: IO[bytes]) -> None:
        """Drop an upload that was refused (nothing once it is kept)."""

    def new_scratch(self) -> Path:
        """A new, empty local file for a tool that writes to a path."""

    def keep_scratch(self, scratch: Path) -> str:
        """Store a scratch file as a video (it is gone from its path after); its key."""

    def discard_scratch(self, scratch: Path) -> None:
        """Remove a scratch file that is not kept."""

    def source(self, key: str) -> VideoSource:
        """What the video readers open for the stored video ``key``.

        Raises:
            StorageError: ``key`` is malformed or names nothing stored.
        """

    def size(self, key: str) -> int:
        """The stored video's length in bytes.

        Raises:
            StorageError: ``key`` is malformed or names nothing stored.
        """

    def delete(self, key: str) -> None:
        """Remove the video; no error if it is already gone."""

    def sweep_uploads(self, older_than: float) -> int:
        """Remove the temporary files of uploads, downloads and renders left unfinished
        (their process died): those not written to for ``older_than`` seconds."""
