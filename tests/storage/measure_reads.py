"""What reading a video from a bucket costs: the bytes that probing, indexing and
decoding each chunk fetch with ranged GETs, against the file's size and each chunk's
share of it (its frames' fraction of the file's bytes).

Run it by hand (it is no test):
``.venv/bin/python -m tests.storage.measure_reads VIDEO [CHUNK_FRAMES] [BLOCK_KIB]``.
The video is uploaded to a bucket of moto's server, started on loopback, through
`S3VideoStorage`; the figures are printed as JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3

from detector.storage.s3 import BLOCK_SIZE, S3VideoStorage
from detector.video import DecodeStats, decode_frames, index_frames, plan_chunks, probe
from tests.storage.conftest import moto_server


def measure(video: Path, chunk_frames: int, block_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch, moto_server(Path(scratch) / "moto.log") as endpoint:
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="videos")
        storage = S3VideoStorage("videos", "measure", endpoint_url=endpoint, block_size=block_size)
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
        ratios, reads, requests = [], [], []
        for chunk in chunks:
            start, asked = storage.reads.bytes, storage.reads.requests
            for _ in decode_frames(storage.source(key), chunk.seek_pts, chunk.frame_pts, DecodeStats()):
                pass
            read = storage.reads.bytes - start
            share = size * len(chunk.frame_pts) / len(index)
            reads.append(read)
            requests.append(storage.reads.requests - asked)
            ratios.append(read / share)
    return {
        "video": video.name,
        "bytes": size,
        "frames": len(index),
        "chunk_frames": chunk_frames,
        "chunks": len(chunks),
        "block_bytes": block_size,
        "probe_bytes": probed,
        "index_bytes": indexed,
        "chunk_bytes_median": statistics.median(reads),
        "chunk_bytes_max": max(reads),
        "chunk_requests_median": statistics.median(requests),
        "read_over_share_median": round(statistics.median(ratios), 2),
        "read_over_share_max": round(max(ratios), 2),
        "chunk_read_over_file_max": round(max(reads) / size, 3),
    }


def main() -> None:
    video = Path(sys.argv[1])
    chunk_frames = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    block = int(sys.argv[3]) * 1024 if len(sys.argv) > 3 else BLOCK_SIZE
    print(json.dumps(measure(video, chunk_frames, block), indent=2))


if __name__ == "__main__":
    main()
