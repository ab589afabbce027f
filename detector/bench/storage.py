"""The benchmark's storage figure: what reading a video from a bucket costs.

A video is uploaded through `S3VideoStorage` to a bucket of moto's S3 server, run on
loopback for the figure, then probed, indexed and decoded chunk by chunk as the
pipeline does (probe on upload, `index_frames` when planning, `decode_frames` per
chunk). The storage counts the bytes its ranged GETs fetch; the figure sets them
against the file's size and each chunk's share of it (its frames' fraction of the
file's bytes). A chunk that reads the whole file is the bug this looks for.

The figure measures the benchmark's main video and, when the shared test data is
there, vtest.avi (`RealVideoData`). Without moto (a dev extra) it is skipped with a
note. Loopback has no latency worth the name: the figures are bytes and requests,
not seconds.

`moto_server` is here rather than in the tests because the benchmark starts it too;
tests/storage/conftest.py uses this one.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the tests' conftest imports moto_server: no model libraries for it
    from detector.bench.figures import Bench

#: The credentials and region moto's server is given (it accepts any), and settings
#: that keep boto3 from looking for others (files, the instance metadata service).
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}

#: The bucket the figure uploads to, and the prefix of its objects.
BUCKET = "bench-videos"
PREFIX = "bench"


def moto_available() -> bool:
    """Whether moto's server can be started (``moto[server]``, a dev extra)."""
    return (
        importlib.util.find_spec("moto") is not None and importlib.util.find_spec("moto.server") is not None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """Run moto's standalone S3 server on a free loopback port; its URL.

    Raises:
        RuntimeError: it did not answer within 30 s (its output is in ``log``).
    """
    port = _free_port()
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextmanager
def _environment(settings: dict[str, str]) -> Iterator[None]:
    """``settings`` in this process's environment while inside; as they were after."""
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def moto_bucket(scratch: Path) -> Iterator[str]:
    """A moto server with the figure's bucket, and MOTO_ENV set while inside; its URL."""
    import boto3

    with moto_server(scratch / "moto.log") as endpoint, _environment(MOTO_ENV):
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


def measure_reads(video: Path, chunk_frames: int, endpoint: str, block_size: int = 0) -> dict[str, Any]:
    """Upload ``video`` to the bucket at ``endpoint`` (made by `moto_bucket`), then
    probe it, index it and decode each chunk of ``chunk_frames`` frames from there,
    counting the bytes and GETs each step fetches.

    Args:
        block_size: bytes a GET fetches where reading jumps; 0 for the storage's
            own (BLOCK_SIZE of detector/storage/s3.py).

    Returns:
        The figures of this video: its size, frames and chunks; bytes read by the
        probe and the index; bytes and GETs per chunk (median, max); a chunk's bytes
        over its share of the file (median, max) and over the whole file (max).
    """
    from detector.storage.s3 import BLOCK_SIZE, S3VideoStorage
    from detector.video import DecodeStats, decode_frames, index_frames, plan_chunks, probe

    block_size = block_size or BLOCK_SIZE
    storage = S3VideoStorage(BUCKET, PREFIX, endpoint_url=endpoint, block_size=block_size)
    upload = storage.new_upload()
    with open(video, "rb") as source:
        while data := source.read(1024 * 1024):
            upload.write(data)
    size = storage.upload_size(upload)
    probe(storage.upload_source(upload))
    probed = storage.reads.bytes
    key = storage.commit_upload(upload)
    start = storage.reads.bytes
    index = index_frames(storage.source(key))
    indexed = storage.reads.bytes - start
    chunks = plan_chunks(index, chunk_frames)
    reads, requests, ratios = [], [], []
    for chunk in chunks:
        start, asked = storage.reads.bytes, storage.reads.requests
        for _ in decode_frames(storage.source(key), chunk.seek_pts, chunk.frame_pts, DecodeStats()):
            pass
        read = storage.reads.bytes - start
        reads.append(read)
        requests.append(storage.reads.requests - asked)
        ratios.append(read / (size * len(chunk.frame_pts) / len(index)))
    storage.delete(key)
    return {
        "video": video.name,
        "bytes": size,
        "frames": len(index),
        "chunk_frames": chunk_frames,
        "chunks": len(chunks),
        "block_bytes": block_size,
        "probe_bytes": probed,
        "index_bytes": indexed,
        "chunk_bytes": reads,
        "chunk_bytes_median": int(statistics.median(reads)),
        "chunk_bytes_max": max(reads),
        "chunk_requests_median": statistics.median(requests),
        "chunk_requests_max": max(requests),
        "read_over_share_median": round(statistics.median(ratios), 2),
        "read_over_share_max": round(max(ratios), 2),
        "chunk_read_over_file_max": round(max(reads) / size, 3),
    }


def storage_reads(bench: Bench) -> dict[str, Any]:
    """The figure (``storage_reads`` in the report): `measure_reads` of the main video
    and of vtest.avi where the shared test data has it, at ``chunk_frames`` frames a
    chunk; skipped, with a note, without moto."""
    from detector.bench.realvideo import RealVideoData

    options = bench.options
    if not moto_available():
        note = "moto[server] is not installed (pip install -e '.[dev]')"
        bench.log(f"storage reads: skipped, {note}")
        return {"storage_reads": {"skipped": note}}
    videos = [bench.videos.main]
    notes = []
    real = RealVideoData(Path(options.testdata).expanduser().resolve()).video
    if real.is_file():
        videos.append(real)
    else:
        notes.append(f"no {real}: the real video is left out")
    measured = []
    with tempfile.TemporaryDirectory(dir=bench.out) as scratch, moto_bucket(Path(scratch)) as endpoint:
        for video in videos:
            found = measure_reads(video, options.chunk_frames, endpoint, options.storage_block_kib * 1024)
            bench.log(
                f"storage reads, {found['video']} ({found['bytes']} bytes, {found['chunks']} chunks): "
                f"probe {found['probe_bytes']}, index {found['index_bytes']}, a chunk "
                f"{found['chunk_bytes_median']} (median) {found['chunk_bytes_max']} (max) bytes, "
                f"{found['read_over_share_median']} x its share (median), "
                f"{found['chunk_requests_median']} GETs"
            )
            measured.append(found)
            if found["bytes"] <= found["block_bytes"]:
                notes.append(
                    f"{found['video']} is no larger than one block ({found['block_bytes']} bytes): its "
                    "first GET fetches all of it, so every step reads the whole file"
                )
    for note in notes:
        bench.log(f"storage reads: {note}")
    return {"storage_reads": {"server": "moto on loopback", "videos": measured, "notes": notes}}
