"""S3VideoStorage against a real S3-compatible server (moto's, on loopback): uploads in
multipart parts, aborted when dropped; ranged reads that decode a chunk without
reading the whole video; sweeping unfinished uploads."""

from __future__ import annotations

import os
import time
from pathlib import Path

import av
import boto3
import numpy as np
import pytest

from detector.storage import StorageError, build_storage
from detector.storage.s3 import S3Upload, S3VideoStorage
from detector.video import decode_frames, index_frames, plan_chunks, probe
from tests.storage.conftest import objects

MIB = 1024 * 1024
# S3's smallest part (but the last); moto enforces it as S3 does.
PART = 5 * MIB


def _storage(bucket: str, endpoint: str, **kwargs) -> S3VideoStorage:
    return S3VideoStorage(bucket, "videos", endpoint_url=endpoint, **kwargs)


def _multipart_uploads(bucket: str, endpoint: str) -> list[dict]:
    answer = boto3.client("s3", endpoint_url=endpoint).list_multipart_uploads(Bucket=bucket)
    return list(answer.get("Uploads", []))


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 s of noise, 160x120 at 10 fps, a keyframe every 24 frames (10 chunks): noise
    does not compress, so each chunk holds about a tenth of the file's bytes."""
    path = tmp_path_factory.mktemp("s3") / "noise.mp4"
    rng = np.random.default_rng(7)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"g": "24", "keyint_min": "24", "sc_threshold": "0"}
        for _ in range(240):
            image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def test_vide_storage_url_names_the_bucket_prefix_and_endpoint(s3_env, bucket):
    storage = build_storage(f"s3://{bucket}/some/prefix/")
    assert isinstance(storage, S3VideoStorage)
    assert (storage.bucket, storage.prefix, storage.endpoint_url) == (
        bucket,
        "some/prefix/",
        s3_env["S3_ENDPOINT_URL"],
    )
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        S3VideoStorage.from_url("s3:///nobucket")


def test_an_upload_streams_in_parts_and_is_kept_whole(s3_env, bucket):
    endpoint = s3_env["S3_ENDPOINT_URL"]
    storage = _storage(bucket, endpoint, part_size=PART)
    upload = storage.new_upload()
    assert isinstance(upload, S3Upload)
    data = os.urandom(12 * MIB + 1234)
    for start in range(0, len(data), 256 * 1024):
        upload.write(data[start : start + 256 * 1024])
        assert len(upload._buffer) < PART  # never more than a part in memory
    # Two parts are in the bucket before the upload is finished; nothing is readable yet.
    [pending] = _multipart_uploads(bucket, endpoint)
    client = boto3.client("s3", endpoint_url=endpoint)
    parts = client.list_parts(Bucket=bucket, Key=pending["Key"], UploadId=pending["UploadId"])["Parts"]
    assert [p["Size"] for p in parts] == [PART, PART]
    assert objects(bucket, endpoint) == []
    assert storage.upload_size(upload) == len(data)
    upload.seek(0)  # as werkzeug does once a file part is read
    key = storage.commit_upload(upload)
    storage.discard_upload(upload)  # the request's teardown: nothing once kept
    assert _multipart_uploads(bucket, endpoint) == []
    assert [o["Key"] for o in objects(bucket, endpoint)] == [f"videos/{key}"]
    assert storage.size(key) == len(data)
    with storage.source(key).open() as stored:
        stored.seek(5 * MIB - 10)
        assert stored.read(20) == data[5 * MIB - 10 : 5 * MIB + 10]
        stored.seek(0)
        assert stored.read() == data
    storage.delete(key)
    storage.delete(key)  # already gone: no error
    assert objects(bucket, endpoint) == []
    with pytest.raises(StorageError):
        storage.source(key)
    with pytest.raises(StorageError):
        storage.size("../etc/passwd")


def test_a_dropped_upload_aborts_its_multipart_upload(s3_env, bucket):
    endpoint = s3_env["S3_ENDPOINT_URL"]
    storage = _storage(bucket, endpoint, part_size=PART)
    upload = storage.new_upload()
    upload.write(os.urandom(PART + 100))
    assert len(_multipart_uploads(bucket, endpoint)) == 1
    storage.discard_upload(upload)
    assert _multipart_uploads(bucket, endpoint) == []
    assert objects(bucket, endpoint) == []
    # Refused after it was probed (complete in the bucket): the object is deleted.
    upload = storage.new_upload()
    upload.write(b"not a video")
    storage.upload_source(upload)
    assert len(objects(bucket, endpoint)) == 1
    storage.discard_upload(upload)
    assert objects(bucket, endpoint) == []


def test_a_download_that_starts_over_truncates_its_upload(s3_env, bucket):
    endpoint = s3_env["S3_ENDPOINT_URL"]
    storage = _storage(bucket, endpoint, part_size=PART)
    upload = storage.new_upload()
    upload.write(os.urandom(PART + 100))
    upload.seek(0)
    upload.truncate()
    assert _multipart_uploads(bucket, endpoint) == []
    upload.write(b"fresh")
    key = storage.commit_upload(upload)
    with storage.source(key).open() as stored:
        assert stored.read() == b"fresh"


def test_probing_and_decoding_a_chunk_read_only_what_they_need(s3_env, bucket, long_video):
    endpoint = s3_env["S3_ENDPOINT_URL"]
    storage = _storage(bucket, endpoint, block_size=64 * 1024)
    upload = storage.new_upload()
    upload.write(long_video.read_bytes())
    size = storage.upload_size(upload)
    source = storage.upload_source(upload)
    assert probe(source) == probe(long_video)
    probed = storage.reads.bytes
    assert probed < size / 2, (probed, size)
    key = storage.commit_upload(upload)

    index = index_frames(storage.source(key))
    assert index == index_frames(long_video)
    chunks = plan_chunks(index, 24)
    assert len(chunks) == 10
    chunk = chunks[5]
    before = storage.reads.bytes
    from_bucket = list(decode_frames(storage.source(key), chunk.seek_pts, chunk.frame_pts))
    read = storage.reads.bytes - before
    local = list(decode_frames(long_video, chunk.seek_pts, chunk.frame_pts))
    assert len(from_bucket) == len(local) == 24
    assert all((a == b).all() for a, b in zip(from_bucket, local, strict=True))
    # A tenth of the frames: its share of the file, the index at the front and a
    # block either side, well under the whole video.
    assert read < size * 0.4, (read, size)


def test_a_scratch_file_is_uploaded_and_removed(s3_env, bucket, tmp_path):
    endpoint = s3_env["S3_ENDPOINT_URL"]
    storage = _storage(bucket, endpoint, part_size=PART, scratch=tmp_path / "scratch")
    scratch = storage.new_scratch()
    data = os.urandom(PART + 10)
    scratch.write_bytes(data)
    key = storage.keep_scratch(scratch)
    assert not scratch.exists()
    assert storage.size(key) == len(data)
    dropped = storage.new_scratch()
    storage.discard_scratch(dropped)
    assert not dropped.exists()


def test_sweep_aborts_only_uploads_left_unfinished(s3_env, bucket, tmp_path):
    endpoint = s3_env["S3_ENDPOINT_URL"]
    storage = _storage(bucket, endpoint, part_size=PART, scratch=tmp_path / "scratch")
    abandoned = storage.new_upload()
    abandoned.write(os.urandom(PART))
    old = storage.new_scratch()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert storage.sweep_uploads(older_than=3600) == 1  # the old scratch file only
    assert len(_multipart_uploads(bucket, endpoint)) == 1 and not old.exists()
    time.sleep(1.1)
    assert storage.sweep_uploads(older_than=1) == 1
    assert _multipart_uploads(bucket, endpoint) == []


def test_a_video_deleted_while_it_is_read_fails_as_a_file_read_would(s3_env, bucket):
    storage = _storage(bucket, s3_env["S3_ENDPOINT_URL"], block_size=1024)
    upload = storage.new_upload()
    upload.write(os.urandom(10_000))
    key = storage.commit_upload(upload)
    with storage.source(key).open() as stored:
        assert len(stored.read(100)) == 100
        storage.delete(key)
        with pytest.raises(OSError, match="reading bytes"):
            stored.read()
