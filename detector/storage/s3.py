"""Videos as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph), through boto3.

VIDEO_STORAGE=s3://bucket/prefix; the endpoint, region and credentials come from the
standard AWS settings (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
~/.aws, an instance role), the endpoint of a server other than AWS from S3_ENDPOINT_URL.

* Uploads and downloads stream into a multipart upload, PART_SIZE bytes of memory
  at a time; the object is complete (and readable, to probe it) once the upload is
  finished, under the key it keeps. A dropped upload is aborted, or deleted once
  complete.
* Readers (PyAV's demuxers, the media endpoints) get a seekable file that fetches
  what is read with ranged GETs (BLOCK_SIZE, more as reading goes on), and counts the bytes
  fetched (``S3VideoStorage.reads``): decoding a chunk reads its share of the file,
  not the whole of it.
* A render's encoder writes to a local scratch file (MP4's index is moved to the
  front at the end, which needs a seekable file), uploaded when it is done.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO
from urllib.parse import urlsplit

from detector.storage.base import KEY, StorageError

# Bytes of an upload held in memory before they are sent as one part (S3's least is
# 5 MiB for every part but the last).
PART_SIZE = 8 * 1024 * 1024
# Ranged reads: what a GET fetches where reading jumps (PyAV reads 32 KiB at a time);
# each GET that continues where the last one ended fetches twice as much, up to
# READ_AHEAD; a reader keeps the last CACHED_BLOCKS blocks it fetched.
BLOCK_SIZE = 256 * 1024
READ_AHEAD = 2 * 1024 * 1024
CACHED_BLOCKS = 32


@dataclass
class ReadCounter:
    """Ranged GETs made and bytes they fetched, by every reader of one storage."""

    requests: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, size: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += size


@dataclass(frozen=True)
class S3Object:
    """A stored object: what `detector.video` opens (a ``ByteSource``) and the media
    endpoints send."""

    storage: S3VideoStorage
    key: str
    size: int
    etag: str
    last_modified: datetime

    def open(self) -> BinaryIO:
        raw = _RangedReader(self.storage, self.storage.object_key(self.key), self.size)
        return io.BufferedReader(raw, buffer_size=64 * 1024)  # type: ignore[return-value]


class _RangedReader(io.RawIOBase):
    """The object's bytes, read with ``GET Range`` in blocks of ``block_size`` bytes at
    multiples of it, more at once while reading goes on where the last GET ended. The
    last CACHED_BLOCKS blocks are kept: a demuxer goes back and forth between a file's
    header, its index (at the end of an AVI or a plain MP4) and its media, and reads
    each in small pieces."""

    def __init__(self, storage: S3VideoStorage, name: str, size: int) -> None:
        super().__init__()
        self._storage = storage
        self._name = name
        self._size = size
        self._pos = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._fetched_to = -1  # where the last GET ended
        self._ahead = 0  # how much it fetched

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"seek to {base + offset}, before the start of the object")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not len(view):
            return 0
        number, offset = divmod(self._pos, self._storage.block_size)
        block = self._block(number)
        piece = block[offset : offset + len(view)]
        view[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)

    def _block(self, number: int) -> bytes:
        block = self._blocks.get(number)
        if block is None:
            size = self._storage.block_size
            start = number * size
            sequential = start == self._fetched_to
            self._ahead = min(self._ahead * 2, READ_AHEAD) if sequential else size
            end = min(self._size, start + max(self._ahead, size))
            data = self._storage.get_range(self._name, start, end)
            self._fetched_to = end
            for first in range(0, len(data), size):
                self._blocks[number + first // size] = data[first : first + size]
                self._blocks.move_to_end(number + first // size)
            while len(self._blocks) > CACHED_BLOCKS:
                self._blocks.popitem(last=False)
            block = self._blocks.get(number, b"")
        self._blocks.move_to_end(number)
        return block


class S3Upload(io.RawIOBase):
    """An upload on its way into the bucket: a multipart upload that gets a part each
    time PART_SIZE bytes are written, finished by `S3VideoStorage.upload_source` or
    ``commit_upload``. Written from start to end; ``seek(0)`` then ``truncate()``
    starts it over (a download that cannot resume)."""

    def __init__(self, storage: S3VideoStorage) -> None:
        super().__init__()
        self.storage = storage
        self.key = uuid.uuid4().hex
        self._buffer = bytearray()
        self._size = 0
        self._pos = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.complete = False
        self.kept = False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    @property
    def size(self) -> int:
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def write(self, data: Any) -> int:
        if self.complete:
            raise ValueError("the upload is finished")
        if self._pos != self._size:
            raise io.UnsupportedOperation("an upload is written from its start to its end")
        self._buffer += data
        written = len(memoryview(data).cast("B"))
        self._size += written
        self._pos = self._size
        while len(self._buffer) >= self.storage.part_size:
            self._send_part(bytes(self._buffer[: self.storage.part_size]))
            del self._buffer[: self.storage.part_size]
        return written

    def truncate(self, size: int | None = None) -> int:
        if (self._pos if size is None else size) != 0:
            raise io.UnsupportedOperation("an upload can only be started over (truncated to 0)")
        self.abort()
        self._buffer.clear()
        self._size = self._pos = 0
        return 0

    def _send_part(self, data: bytes) -> None:
        client, bucket, name = self.storage.client, self.storage.bucket, self.storage.object_key(self.key)
        if self._upload_id is None:
            self._upload_id = client.create_multipart_upload(Bucket=bucket, Key=name)["UploadId"]
        number = len(self._parts) + 1
        answer = client.upload_part(
            Bucket=bucket, Key=name, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def finish(self) -> None:
        """Send what is left and complete the object (a single PUT if it fits one part)."""
        if self.complete:
            return
        client, bucket, name = self.storage.client, self.storage.bucket, self.storage.object_key(self.key)
        if self._upload_id is None:
            client.put_object(Bucket=bucket, Key=name, Body=bytes(self._buffer))
        else:
            if self._buffer:
                self._send_part(bytes(self._buffer))
            client.complete_multipart_upload(
                Bucket=bucket, Key=name, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        self._buffer.clear()
        self._upload_id = None
        self.complete = True

    def abort(self) -> None:
        """Drop the parts sent, or the object once complete; nothing once it is kept."""
        if self.kept:
            return
        client, bucket, name = self.storage.client, self.storage.bucket, self.storage.object_key(self.key)
        if self._upload_id is not None:
            upload_id, self._upload_id, self._parts = self._upload_id, None, []
            client.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
        if self.complete:
            self.complete = False
            client.delete_object(Bucket=bucket, Key=name)


class S3VideoStorage:
    """Videos as objects named ``prefix + key`` in ``bucket``.

    The boto3 client is made in each process that uses it (a Celery worker forks
    after the app is made; a client's connections are not shared across a fork)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        part_size: int = PART_SIZE,
        block_size: int = BLOCK_SIZE,
        scratch: str | os.PathLike[str] | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.part_size = part_size
        self.block_size = block_size
        self.reads = ReadCounter()
        self.scratch = Path(scratch or Path(tempfile.gettempdir()) / "detector-scratch")
        self._client: Any = None
        self._client_pid = 0

    @classmethod
    def from_url(cls, url: str) -> S3VideoStorage:
        """The storage ``s3://bucket/prefix`` names, at S3_ENDPOINT_URL if it is set."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"VIDEO_STORAGE {url!r} is not s3://bucket/prefix")
        return cls(parts.netloc, parts.path, endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None)

    @property
    def client(self) -> Any:
        if self._client is None or self._client_pid != os.getpid():
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
            self._client_pid = os.getpid()
        return self._client

    def object_key(self, key: str) -> str:
        return self.prefix + key

    def get_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of object ``name``, counted in ``reads``.

        Raises:
            OSError: the bucket did not give them (the object was deleted, the server
                is unreachable), as a local file's read would fail.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=name, Range=f"bytes={start}-{end - 1}")
            data: bytes = answer["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"reading bytes {start}-{end - 1} of s3://{self.bucket}/{name}: {exc}") from exc
        self.reads.add(len(data))
        return data

    # Uploads and downloads

    def new_upload(self) -> IO[bytes]:
        return S3Upload(self)  # type: ignore[return-value]

    def upload_size(self, upload: IO[bytes]) -> int:
        return _upload(upload).size

    def upload_source(self, upload: IO[bytes]) -> S3Object:
        written = _upload(upload)
        written.finish()
        return self.source(written.key)

    def commit_upload(self, upload: IO[bytes]) -> str:
        written = _upload(upload)
        written.finish()
        written.kept = True
        written.close()
        return written.key

    def discard_upload(self, upload: IO[bytes]) -> None:
        written = _upload(upload)
        written.abort()
        written.close()

    # Renders

    def new_scratch(self) -> Path:
        self.scratch.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=self.scratch, prefix="render-")
        os.close(descriptor)
        return Path(name)

    def keep_scratch(self, scratch: Path) -> str:
        from boto3.s3.transfer import TransferConfig

        key = uuid.uuid4().hex
        config = TransferConfig(multipart_threshold=self.part_size, multipart_chunksize=self.part_size)
        self.client.upload_file(str(scratch), self.bucket, self.object_key(key), Config=config)
        scratch.unlink(missing_ok=True)
        return key

    def discard_scratch(self, scratch: Path) -> None:
        scratch.unlink(missing_ok=True)

    # Stored videos

    def source(self, key: str) -> S3Object:
        if not KEY.match(key):
            raise StorageError(f"malformed storage key {key!r}")
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise StorageError(f"no stored video under key {key}") from None
            raise
        return S3Object(
            self, key, int(head["ContentLength"]), str(head["ETag"]).strip('"'), head["LastModified"]
        )

    def size(self, key: str) -> int:
        return self.source(key).size

    def delete(self, key: str) -> None:
        if KEY.match(key):
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def sweep_uploads(self, older_than: float) -> int:
        """Abort the multipart uploads under the prefix whose last part (or start) is
        older than ``older_than`` seconds, and remove such scratch files."""
        cutoff = time.time() - older_than
        removed = 0
        for upload in self._multipart_uploads():
            name, upload_id = upload["Key"], upload["UploadId"]
            last = upload["Initiated"].timestamp()
            if last >= cutoff:
                continue
            parts = self.client.list_parts(Bucket=self.bucket, Key=name, UploadId=upload_id).get("Parts", [])
            last = max([last, *(part["LastModified"].timestamp() for part in parts)])
            if last < cutoff:
                with contextlib.suppress(Exception):  # finished or aborted meanwhile
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
                    removed += 1
        if self.scratch.is_dir():
            with os.scandir(self.scratch) as entries:
                for entry in entries:
                    with contextlib.suppress(FileNotFoundError):
                        if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
        return removed

    def _multipart_uploads(self) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
            yield from page.get("Uploads", [])


def _upload(upload: IO[bytes]) -> S3Upload:
    if not isinstance(upload, S3Upload):
        raise TypeError(f"not an upload of this storage: {upload!r}")
    return upload
