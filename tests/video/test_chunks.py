"""Chunk planning and frame-range decoding: every frame exactly once, at any boundary."""

from __future__ import annotations

import random
from itertools import pairwise

import numpy as np
import pytest

from detector.video import (
    DecodeStats,
    FrameIndex,
    VideoError,
    decode_frames,
    index_frames,
    iter_chunk_plans,
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


# --- Sparse selections: a job that samples, strides or analyses a span ---


def _random_index(rng: random.Random, n: int) -> FrameIndex:
    from fractions import Fraction

    keyframes = sorted({0, *rng.sample(range(1, n), rng.randint(0, max(1, n // 8)))})
    pts, t = [], 0
    for _ in range(n):
        pts.append(t)
        t += rng.choice([1, 2, 3, 7])  # a variable frame rate
    return FrameIndex(pts=pts, keyframes=keyframes, time_base=Fraction(1, 100))


def _keyframe_at_or_before(index: FrameIndex, frame: int) -> int:
    return max(k for k in index.keyframes if k <= frame)


def _selections(rng: random.Random, n: int) -> list[list[int]]:
    every = list(range(n))
    return [
        every[:: rng.randint(2, 9)],
        every[rng.randint(0, n // 3) : rng.randint(n // 2, n) : rng.randint(1, 4)],
        sorted(rng.sample(every, rng.randint(1, n))),
        [rng.randrange(n)],
    ]


def _check_plans(index: FrameIndex, selected: list[int], chunk_frames: int, plans) -> None:
    assert [f for p in plans for f in p.frames] == selected  # each selected frame once, in order
    assert [p.index for p in plans] == list(range(len(plans)))
    slack = chunk_frames // 2
    for i, p in enumerate(plans):
        assert p.frames == sorted(set(p.frames)) and p.frames
        assert (p.start_frame, p.end_frame) == (p.frames[0], p.frames[-1] + 1)
        assert p.frame_count == len(p.frames)
        assert p.frame_pts == [index.pts[f] for f in p.frames]
        assert p.timestamps == [index.timestamp(index.pts[f]) for f in p.frames]
        assert p.seek_pts == index.pts[_keyframe_at_or_before(index, p.frames[0])]
        if i + 1 < len(plans):
            assert chunk_frames - slack <= p.frame_count <= chunk_frames + slack
        else:
            assert p.frame_count <= chunk_frames


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("chunk_frames", [1, 3, 8, 24])
def test_sparse_selection_is_planned_once_in_order_in_chunks_of_about_chunk_frames(seed, chunk_frames):
    rng = random.Random(seed)
    index = _random_index(rng, rng.randint(20, 300))
    for selected in _selections(rng, len(index)):
        _check_plans(index, selected, chunk_frames, plan_chunks(index, chunk_frames, selected))


def _decoded_twice(index: FrameIndex, previous_last: int, first: int) -> int:
    """Frames decoded by both the chunk ending at ``previous_last`` and the one that
    starts at ``first`` (it decodes from the keyframe before ``first``)."""
    return max(0, previous_last + 1 - _keyframe_at_or_before(index, first))


def test_sparse_chunk_starts_move_to_where_no_frame_is_decoded_twice():
    """Every 2nd frame, keyframes every 25: a chunk of 10 selected frames would start at
    frame 20, 46, 70, 96; each moves (within half a chunk) to the first selected frame
    after a keyframe, so no frame is decoded by two chunks, where there is one."""
    index = _index(100, [0, 25, 50, 75])
    plans = plan_chunks(index, 10, list(range(0, 100, 2)))
    assert [p.start_frame for p in plans] == [0, 26, 50, 76, 96]
    assert [p.seek_pts for p in plans] == [0, 250, 500, 750, 750]
    for a, b in pairwise(plans[:4]):
        assert _decoded_twice(index, a.frames[-1], b.frames[0]) == 0
    # No keyframe within reach of the last start: it stays where it is.
    assert _decoded_twice(index, plans[3].frames[-1], plans[4].frames[0]) > 0


@pytest.mark.parametrize("seed", range(20))
def test_sparse_chunk_starts_avoid_decoding_twice_whenever_they_can(seed):
    """Wherever a start within half a chunk of the target decodes no frame twice, the
    chunk starts at the nearest such place."""
    rng = random.Random(seed)
    index = _random_index(rng, rng.randint(50, 400))
    chunk_frames = rng.choice([4, 10, 16])
    slack = chunk_frames // 2
    for selected in _selections(rng, len(index))[:3]:
        plans = plan_chunks(index, chunk_frames, selected)
        position = {f: i for i, f in enumerate(selected)}
        for a, b in pairwise(plans):
            target = position[a.frames[0]] + chunk_frames
            window = range(
                max(position[a.frames[0]] + 1, target - slack), min(len(selected) - 1, target + slack) + 1
            )
            clean = [p for p in window if _decoded_twice(index, selected[p - 1], selected[p]) == 0]
            chosen = position[b.frames[0]]
            if clean:
                assert chosen == min(clean, key=lambda p: (abs(p - target), p))
            else:
                assert chosen == target


def _plan_before_selections(index: FrameIndex, chunk_frames: int) -> list[tuple[int, int, int]]:
    """(start, end, seek frame) of each chunk as the planner made them before jobs could
    sample: starts ``chunk_frames`` apart, each moved to the nearest keyframe within half
    a chunk (the earlier on a tie)."""
    import bisect

    starts, slack, total = [0], chunk_frames // 2, len(index)
    while (target := starts[-1] + chunk_frames) < total:
        pos = bisect.bisect_left(index.keyframes, target)
        near = [k for k in index.keyframes[max(pos - 1, 0) : pos + 1] if abs(k - target) <= slack]
        starts.append(min(near, key=lambda k: abs(k - target)) if near else target)
    ends = [*starts[1:], total]
    return [(s, e, _keyframe_at_or_before(index, s)) for s, e in zip(starts, ends, strict=True)]


@pytest.mark.parametrize("seed", range(15))
def test_a_contiguous_selection_is_planned_as_every_frame_was_before(seed):
    rng = random.Random(seed)
    index = _random_index(rng, rng.randint(1, 300))
    chunk_frames = rng.choice([1, 2, 5, 10, 24, 25, 1000])
    plans = plan_chunks(index, chunk_frames, list(range(len(index))))
    assert plans == plan_chunks(index, chunk_frames)
    assert [(p.start_frame, p.end_frame, _keyframe_at_or_before(index, p.start_frame)) for p in plans] == (
        _plan_before_selections(index, chunk_frames)
    )
    for p in plans:
        assert p.frames == list(range(p.start_frame, p.end_frame))
        assert p.frame_pts == index.pts[p.start_frame : p.end_frame]


def test_an_empty_selection_has_no_chunks_and_chunk_frames_must_be_positive():
    index = _index(30, [0, 10, 20])
    assert plan_chunks(index, 10, []) == []
    with pytest.raises(ValueError, match="chunk_frames"):
        plan_chunks(index, 0, [1, 2])


# Frames a decoder may present past the one asked for before decoding stops.
DECODE_SLACK = 2


def _video_for_decoding(tmp_path, vfr: bool):
    """90 frames with B-frames and a keyframe every 12, at a constant or a variable rate."""
    rng = random.Random(11)
    pts = None
    if vfr:
        pts = [0]
        for _ in range(89):
            pts.append(pts[-1] + rng.choice([40, 100, 150, 330]))
    path = make_video(tmp_path / "v.mp4", frames=90, width=96, height=64, fps=10, gop=12, pts=pts)
    index = index_frames(path)
    assert len(index) == 90 and len(index.keyframes) == 8
    # A span, then a stride: chunks start mid-GOP.
    return path, index, plan_chunks(index, 6, list(range(5, 80, 3)))


@pytest.mark.parametrize("vfr", [False, True], ids=["constant-rate", "variable-rate"])
def test_decoding_a_sparse_chunk_delivers_exactly_its_frames_and_stops_at_its_last(tmp_path, vfr):
    path, index, plans = _video_for_decoding(tmp_path, vfr)
    assert len(plans) >= 4
    full = list(decode_frames(path, index.pts[0], index.pts))
    delivered: list[int] = []
    for plan in plans:
        stats = DecodeStats()
        frames = list(decode_frames(path, plan.seek_pts, plan.frame_pts, stats))
        assert len(frames) == plan.frame_count == stats.delivered
        for f, image in zip(plan.frames, frames, strict=True):
            assert np.array_equal(image, full[f]), f"frame {f}"
        delivered += plan.frames
        seek = index.pts.index(plan.seek_pts)
        assert seek in index.keyframes and seek <= plan.frames[0]
        assert stats.decoded >= stats.delivered
        # Decoding ran from a keyframe (at or before the chunk's) to the chunk's last
        # frame and stopped there, not at the end of the video.
        last = plan.frames[-1]
        assert any(
            0 <= stats.decoded - (last - k + 1) <= DECODE_SLACK for k in index.keyframes if k <= seek
        ), (plan.frames, stats)
    assert delivered == [f for p in plans for f in p.frames] == list(range(5, 80, 3))
    for i in (5, 8, 41, 77):
        assert _matches(full[i], i, 96, 64), i


@pytest.mark.parametrize("vfr", [False, True], ids=["constant-rate", "variable-rate"])
def test_decoding_a_chunk_starts_at_its_own_keyframe(tmp_path, vfr):
    """A chunk decodes from its keyframe to its last frame: its frames and the few
    between them, no more."""
    path, index, plans = _video_for_decoding(tmp_path, vfr)
    for plan in plans:
        stats = DecodeStats()
        for _ in decode_frames(path, plan.seek_pts, plan.frame_pts, stats):
            pass
        ideal = plan.frames[-1] - index.pts.index(plan.seek_pts) + 1
        assert ideal <= stats.decoded <= ideal + DECODE_SLACK, (plan.frames, stats)


@pytest.mark.parametrize("vfr", [False, True], ids=["constant-rate", "variable-rate"])
def test_decoding_from_a_timestamp_between_keyframes_decodes_from_where_the_seek_lands(tmp_path, vfr):
    """Thumbnails seek to the first wanted frame, no keyframe: no packet is skipped
    then, decoding runs from where the seek landed (a keyframe before the frame, on
    a variable rate maybe the one before that), not from the start of the video."""
    path, index, _ = _video_for_decoding(tmp_path, vfr)
    full = list(decode_frames(path, index.pts[0], index.pts))
    for first in (41, 55, 77):
        assert first not in index.keyframes
        wanted = [first, first + 1, first + 3]
        stats = DecodeStats()
        frames = list(decode_frames(path, index.pts[first], [index.pts[f] for f in wanted], stats))
        for f, image in zip(wanted, frames, strict=True):
            assert np.array_equal(image, full[f]), f"frame {f}"
        keys = [k for k in index.keyframes if k <= first][-2:]
        assert any(0 <= stats.decoded - (wanted[-1] - k + 1) <= DECODE_SLACK for k in keys), (first, stats)


def test_chunks_planned_one_at_a_time_are_the_plan_and_timestamps_are_exact():
    """`iter_chunk_plans` (what planning stores a batch at a time) gives `plan_chunks`'s
    chunks, and a frame's timestamp is exactly float() of its Fraction of a second."""
    from fractions import Fraction

    index = FrameIndex(
        pts=[i * 1001 for i in range(300)], keyframes=[0, 90, 180, 270], time_base=Fraction(1, 30000)
    )
    selected = list(range(3, 300, 4))
    assert list(iter_chunk_plans(index, 20, selected)) == plan_chunks(index, 20, selected)
    assert list(iter_chunk_plans(index, 20, [])) == []
    with pytest.raises(ValueError, match="chunk_frames"):
        iter_chunk_plans(index, 0, selected)  # at once, before any chunk is taken
    exact = [round(float((p - index.pts[0]) * index.time_base), 6) for p in index.pts]
    assert list(index.timestamps()) == [index.timestamp(p) for p in index.pts] == exact
