"""A local directory of videos, shared by every node of a deployment (NFS, a volume)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

from detector.storage.base import KEY as _KEY
from detector.storage.base import StorageError


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

    def upload_size(self, upload: IO[bytes]) -> int:
        upload.flush()
        return os.fstat(upload.fileno()).st_size

    def upload_source(self, upload: IO[bytes]) -> Path:
        upload.flush()
        return Path(upload.name)

    def commit_upload(self, upload: IO[bytes]) -> str:
        upload.close()
        return self.keep_scratch(Path(upload.name))

    def discard_upload(self, upload: IO[bytes]) -> None:
        upload.close()
        Path(upload.name).unlink(missing_ok=True)

    def new_scratch(self) -> Path:
        with self.new_upload() as scratch:
            return Path(scratch.name)

    def keep_scratch(self, scratch: Path) -> str:
        key = uuid.uuid4().hex
        os.replace(scratch, self.root / key)
        return key

    def discard_scratch(self, scratch: Path) -> None:
        scratch.unlink(missing_ok=True)

    def source(self, key: str) -> Path:
        return self.path(key)

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:  # deleted meanwhile
            raise StorageError(f"no stored video under key {key}") from None

    def path(self, key: str) -> Path:
        """The stored video's local file.

        Raises:
            StorageError: ``key`` is malformed or names no stored video.
        """
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
