"""The benchmark's storage figure (detector/bench/storage.py): bytes read from a bucket
per chunk, on a small video through moto's server."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from detector.bench import storage as bench_storage
from detector.bench.figures import Bench, Videos
from detector.bench.options import BenchOptions
from detector.bench.report import BenchReport, format_table
from detector.bench.storage import storage_reads
from tests.conftest import missing_tool

VIDEO_KEYS = {
    "video", "bytes", "frames", "chunk_frames", "chunks", "block_bytes", "probe_bytes", "index_bytes",
    "chunk_bytes", "chunk_bytes_median", "chunk_bytes_max", "chunk_requests_median", "chunk_requests_max",
    "read_over_share_median", "read_over_share_max", "chunk_read_over_file_max",
}  # fmt: skip


def noise_video(path: Path, frames: int = 60, width: int = 160, height: int = 120, gop: int = 10) -> Path:
    """An H.264 MP4 of random pixels: about 10 KB a frame, which no encoder can
    shrink, so the file is many times the reader's blocks and PyAV's buffer."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        for _ in range(frames):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode())
    return path


def _bench(tmp_path: Path, video: Path, **options: object) -> Bench:
    return Bench(
        options=BenchOptions(out_dir=tmp_path, testdata=str(tmp_path / "nowhere"), **options),  # type: ignore[arg-type]
        out=tmp_path,
        videos=Videos(main=video, warmup=video, short=video, long=video, large=video),
        model_config={},
        log=lambda line: None,
    )


def test_each_chunk_reads_a_part_of_the_video_from_the_bucket(tmp_path: Path) -> None:
    if not bench_storage.moto_available():
        missing_tool("moto[server] is not installed (pip install -e '.[dev]')")
    video = noise_video(tmp_path / "noise.mp4")
    size = video.stat().st_size
    figure = storage_reads(_bench(tmp_path, video, chunk_frames=20, storage_block_kib=16))["storage_reads"]
    assert "skipped" not in figure
    assert any("the real video is left out" in note for note in figure["notes"])
    (measured,) = figure["videos"]
    assert set(measured) == VIDEO_KEYS
    assert measured["bytes"] == size and measured["frames"] == 60 and measured["block_bytes"] == 16 * 1024
    assert measured["chunks"] == len(measured["chunk_bytes"]) >= 3
    # Every step fetched something, and no chunk fetched the whole file.
    assert measured["probe_bytes"] > 0 and measured["index_bytes"] >= size
    assert all(0 < read < size for read in measured["chunk_bytes"]), (measured["chunk_bytes"], size)
    assert measured["chunk_bytes_max"] == max(measured["chunk_bytes"])
    assert measured["chunk_read_over_file_max"] < 1
    assert measured["chunk_requests_median"] >= 1
    # A chunk reads at least its own frames: its share, give or take the keyframe before it.
    assert measured["read_over_share_median"] >= 0.9
    assert list(tmp_path.glob("tmp*")) == [], "the figure's scratch folder is removed"

    table = format_table(BenchReport(machine={}, options={}, figures={"storage_reads": figure}))
    assert "Bytes read from a bucket (noise.mp4" in table
    assert f"{measured['read_over_share_median']} / {measured['read_over_share_max']}" in table


def test_the_storage_figure_is_skipped_without_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_storage, "moto_available", lambda: False)
    figure = storage_reads(_bench(tmp_path, tmp_path / "unused.mp4"))
    assert "moto[server] is not installed" in figure["storage_reads"]["skipped"]
    table = format_table(BenchReport(machine={}, options={}, figures=figure))
    assert "Bytes read from a bucket" in table and "skipped: moto" in table
