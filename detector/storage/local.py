"""A local directory of videos, shared by every node of a deployment (NFS, a volume)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Protocol

_KEY = re.compile(r"^[0-9a-f]{32}$")


class StorageError(LookupError):
    """A key that is malformed or names no stored video."""


class VideoStorage(Protocol):
    """What the service needs from video storage."""

    def new_upload(self) -> IO[bytes]:
        """A writable file for an incoming upload, inside the storage (no copy later)."""

    def commit_upload(self, upload: IO[bytes]) -> str:
        """Keep a finished upload; returns its new key."""

    def discard_upload(self, upload: IO[bytes]) -> None:
        """Drop an upload that was refused."""

    def path(self, key: str) -> Path:
        """A local file path for reading the video."""

    def delete(self, key: str) -> None:
        """Remove the video; no error if it is already gone."""

    def sweep_uploads(self, older_than: float) -> int:
        """Remove the temporary files of uploads, downloads and renders left unfinished
        (their process died): those not written to for ``older_than`` seconds."""


class LocalVideoStorage:
    """Videos as files named by random keys under ``root``; uploads land in ``root/.incoming``.

    Every file the service writes before it is kept is in ``.incoming``: an upload or
    a download (``upload-*``), and the annotated video a render writes beside its
    upload file (``.upload-*.part``, detector.render)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.incoming = self.root / ".incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def new_upload(self) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(dir=self.incoming, prefix="upload-", delete=False)

    def commit_upload(self, upload: IO[bytes]) -> str:
        upload.close()
        key = uuid.uuid4().hex
        os.replace(upload.name, self.root / key)
        return key

    def discard_upload(self, upload: IO[bytes]) -> None:
        upload.close()
        Path(upload.name).unlink(missing_ok=True)

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise StorageError(f"malformed storage key {key!r}")
        path = self.root / key
        if not path.is_file():
            raise StorageError(f"no stored video under key {key}")
        return path

    def delete(self, key: str) -> None:
        if _KEY.match(key):
            (self.root / key).unlink(missing_ok=True)

    def sweep_uploads(self, older_than: float) -> int:
        # A file in progress is written to continuously, so its mtime is recent.
        cutoff = time.time() - older_than
        removed = 0
        with os.scandir(self.incoming) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):  # finished or swept meanwhile
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed
