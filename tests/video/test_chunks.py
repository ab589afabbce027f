"""Chunk planning and frame-range decoding: every frame exactly once, at any boundary."""

from __future__ import annotations

import random

import numpy as np
import pytest

from detector.video import (
    DecodeStats,
    FrameIndex,
    VideoError,
    decode_frames,
    index_frames,
    plan_chunks,
    probe,
)
from detector.video.synthetic import frame_image, make_video


def _index(n: int, keyframes: list[int]) -> FrameIndex:
    from fractions import Fraction

    return FrameIndex(pts=[i * 10 for i in range(n)], keyframes=keyframes, time_base=Fraction(1, 100))


@pytest.mark.parametrize("total, chunk", [(1, 5), (10, 10), (11, 10), (103, 25), (250, 7), (97, 1)])
def test_plan_covers_every_frame_once(total, chunk):
    plans = plan_chunks(_index(total, list(range(0, total, 13))), chunk)
    covered = [i for p in plans for i in range(p.start_frame, p.end_frame)]
    assert covered == list(range(total))
    assert [p.index for p in plans] == list(range(len(plans)))
    for p in plans:
        assert p.frame_pts == [i * 10 for i in range(p.start_frame, p.end_frame)]
        assert p.seek_pts <= p.frame_pts[0]


def test_chunk_starts_snap_to_nearby_keyframes():
    plans = plan_chunks(_index(100, [0, 23, 51, 77, 96]), 25)
    assert [p.start_frame for p in plans] == [0, 23, 51, 77]
    assert all(p.seek_pts == p.frame_pts[0] for p in plans)  # nothing decoded in vain


def test_chunk_starts_without_a_nearby_keyframe_stay_put():
    plans = plan_chunks(_index(60, [0]), 20)
    assert [p.start_frame for p in plans] == [0, 20, 40]
    assert all(p.seek_pts == 0 for p in plans)


def _decode_all(path, chunk_frames):
    index = index_frames(path)
    stats = DecodeStats()
    frames = []
    for plan in plan_chunks(index, chunk_frames):
        chunk = list(decode_frames(path, plan.seek_pts, plan.frame_pts, stats))
        assert len(chunk) == plan.end_frame - plan.start_frame
        frames += chunk
    return index, frames, stats


def _matches(frame: np.ndarray, i: int, width: int, height: int) -> bool:
    """Decoded frame ``i`` looks like the frame it was encoded from (lossy codec)."""
    expected = frame_image(i, width, height).astype(np.int16)
    best = min(
        range(max(0, i - 2), i + 3),
        key=lambda j: np.abs(frame.astype(np.int16) - frame_image(j, width, height).astype(np.int16)).mean(),
    )
    return best == i and np.abs(frame.astype(np.int16) - expected).mean() < 12


@pytest.mark.parametrize("chunk_frames", [7, 10, 16, 100])
def test_decoding_chunks_returns_each_frame_once_in_order(tmp_path, chunk_frames):
    path = make_video(tmp_path / "v.mp4", frames=37, width=96, height=64, fps=10, gop=10)
    index, frames, stats = _decode_all(path, chunk_frames)
    assert len(frames) == len(index) == 37
    assert stats.delivered == 37
    for i in (0, 6, 7, 9, 10, 15, 16, 36):
        assert _matches(frames[i], i, 96, 64), i


def test_variable_frame_rate_keeps_real_timestamps(tmp_path):
    rng = random.Random(3)
    pts = [0]
    for _ in range(39):
        pts.append(pts[-1] + rng.choice([50, 100, 250]))
    path = make_video(tmp_path / "vfr.mp4", frames=40, width=96, height=64, fps=10, gop=9, pts=pts)
    index, frames, _ = _decode_all(path, 6)
    assert len(frames) == 40
    seconds = [index.timestamp(p) for p in index.pts]
    assert seconds == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    for i in (0, 5, 6, 39):
        assert _matches(frames[i], i, 96, 64), i


@pytest.mark.parametrize("codec, fmt", [("libvpx-vp9", "webm"), ("mjpeg", "avi"), ("mpeg4", "mp4")])
def test_other_codecs_and_containers(tmp_path, codec, fmt):
    path = make_video(
        tmp_path / f"v.{fmt}", frames=25, width=96, height=64, codec=codec, container_format=fmt
    )
    info = probe(path)
    index, frames, _ = _decode_all(path, 10)
    assert len(frames) == len(index) == 25
    assert info.width == 96 and info.height == 64


def test_odd_dimensions_and_a_single_frame(tmp_path):
    path = make_video(tmp_path / "odd.mp4", frames=1, width=321, height=241, codec="mpeg4")
    info = probe(path)
    assert (info.width, info.height, info.frame_count) == (321, 241, 1)
    _, frames, _ = _decode_all(path, 10)
    assert len(frames) == 1 and frames[0].shape == (241, 321, 3)


def test_probe_reads_metadata(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=30, width=128, height=96, fps=15)
    info = probe(path)
    assert info.as_dict() == {
        "codec": "h264",
        "width": 128,
        "height": 96,
        "fps": 15.0,
        "frame_count": 30,
        "duration": 2.0,
        "rotation": 0,
    }


def test_probe_refuses_non_videos(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    with pytest.raises(VideoError, match="not a readable video container"):
        probe(text)


def test_missing_frames_are_an_error_not_a_silent_gap(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=20, width=64, height=48, fps=10, gop=5)
    index = index_frames(path)
    wanted = [*index.pts[:5], index.pts[5] + 1]  # a timestamp no frame has
    with pytest.raises(VideoError, match="could not be decoded"):
        list(decode_frames(path, index.pts[0], wanted))
