"""The video layer on a real recording: vtest.avi from the shared test data (PETS
2009, 795 frames of 768x576 at 10 fps, MPEG-4 part 2 "msmpeg4v3" in AVI, a
keyframe every 250 frames).

Every chunk, decoded on its own from its seek point, yields exactly the frames a
straight decode from the start gives at those places, pixel for pixel: none lost,
none doubled, none shifted by one.
"""

from __future__ import annotations

import hashlib
from itertools import pairwise
from pathlib import Path

import av
import pytest

from detector.video import DecodeStats, decode_frames, index_frames, plan_chunks, probe
from detector.video.selection import FrameSelection
from tests.shared_data import SharedData

FRAMES = 795


def _digest(frame) -> str:
    return hashlib.blake2b(frame.tobytes(), digest_size=16).hexdigest()


@pytest.fixture(scope="module")
def straight(testdata: SharedData) -> tuple[list[int], list[str]]:
    """Every frame of one decode from the start: timestamps and a digest of its BGR pixels."""
    with av.open(str(testdata.video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = [(f.pts, _digest(f.to_ndarray(format="bgr24"))) for f in container.decode(stream)]
    return [pts for pts, _ in frames], [digest for _, digest in frames]


def test_probe_and_index_read_the_avi(testdata: SharedData, straight) -> None:
    info = probe(testdata.video)
    assert (info.codec, info.width, info.height) == ("msmpeg4", 768, 576)
    assert info.fps == 10.0
    assert info.frame_count == FRAMES
    assert info.duration == pytest.approx(79.5)
    index = index_frames(testdata.video)
    assert index.pts == straight[0]
    assert len(index) == FRAMES
    assert index.keyframes == [0, 250, 500, 750]
    assert list(index.timestamps())[:3] == [0.0, 0.1, 0.2]
    assert index.timestamp(index.pts[-1]) == pytest.approx(79.4)


def _chunk_digests(path: Path, chunk_frames: int, selected: list[int] | None = None):
    """The frames of every chunk of the plan, each chunk decoded on its own, as
    (frame index, digest) pairs in plan order, and the decoding's counts."""
    index = index_frames(path)
    stats = DecodeStats()
    got: list[tuple[int, str]] = []
    plans = plan_chunks(index, chunk_frames, selected)
    for plan in plans:
        frames = list(decode_frames(path, plan.seek_pts, plan.frame_pts, stats))
        assert len(frames) == plan.frame_count, plan.index
        got += [(i, _digest(f)) for i, f in zip(plan.frames, frames, strict=True)]
    return plans, got, stats


@pytest.mark.parametrize("chunk_frames", [100, 64])
def test_every_chunk_starts_exactly_at_its_frame(testdata: SharedData, straight, chunk_frames) -> None:
    """Chunk boundaries on and off the keyframes (every 250 frames): chunks of 100
    snap to keyframes 250 and 500 where they can; chunks of 64 mostly start mid-GOP,
    where decoding runs forward from the keyframe before them."""
    plans, got, stats = _chunk_digests(testdata.video, chunk_frames)
    assert len(plans) >= 7
    assert any(p.seek_pts < p.frame_pts[0] for p in plans), "no chunk starts mid-GOP"
    assert [i for i, _ in got] == list(range(FRAMES))
    assert [d for _, d in got] == straight[1]
    assert stats.delivered == FRAMES
    assert stats.decoded > FRAMES  # chunks that start mid-GOP decode from their keyframe


def test_a_sampled_selection_decodes_exactly_its_frames(testdata: SharedData, straight) -> None:
    """Every 7th frame from 12.3 s to 61 s, in chunks of 9 analysed frames."""
    index = index_frames(testdata.video)
    selected = FrameSelection(frame_stride=7, start=12.3, end=61).select(index.timestamps())
    assert selected[0] == 123 and all(b - a == 7 for a, b in pairwise(selected))
    plans, got, _ = _chunk_digests(testdata.video, 9, selected)
    assert len(plans) >= 5
    assert [i for i, _ in got] == selected
    assert [d for _, d in got] == [straight[1][i] for i in selected]
