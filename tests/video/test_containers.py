"""Container edge cases: the index holds exactly the frames a decoder presents, and
every chunk, decoded on its own from its seek point, yields exactly its frames."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from detector.video import DecodeStats, VideoError, decode_frames, index_frames, plan_chunks, probe
from tests.conftest import missing_tool
from tests.video import corpus

# generator, frames a decoder presents
ACCEPTED: dict[str, tuple[Callable[[Path], Path], int]] = {
    "stream-copy trimmed MP4 (edit list, discarded packets, negative timestamps)": (corpus.trimmed_mp4, 57),
    "stream-copy trimmed at both ends": (corpus.trimmed_both_ends_mp4, 32),
    "stream-copy trimmed open-GOP MP4": (corpus.trimmed_open_gop_mp4, 57),
    "B-frames, not trimmed": (corpus.bframes_mp4, 40),
    "open GOP": (corpus.open_gop_mp4, 50),
    "faststart MP4 (moov first)": (corpus.faststart_mp4, 40),
    "MKV starting at 5 s, no per-block durations": (corpus.start_time_mkv, 40),
    "MP4 starting at 5 s": (corpus.start_time_mp4, 40),
    "audio starts before the video": (corpus.audio_first_mp4, 40),
    "MPEG-TS with B-frames": (corpus.mpegts, 60),
    "MPEG-TS cut mid-GOP": (corpus.mpegts_cut_mid_gop, 36),
    "MPEG-TS with open GOPs": (corpus.open_gop_mpegts, 50),
}


def _full_decode(path: Path) -> tuple[list[int], list[np.ndarray]]:
    """Every frame PyAV presents in one pass from the start, as ``ffprobe -count_frames`` counts them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream) if f.pts is not None]
        return [f.pts for f in frames], [f.to_ndarray(format="bgr24") for f in frames]


def _ffprobe_count(path: Path) -> int:
    out = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames"),
            *("-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip().strip(",").splitlines()[0])


@pytest.fixture(scope="module", params=list(ACCEPTED))
def case(request, tmp_path_factory) -> tuple[str, Path, int]:
    make, frames = ACCEPTED[request.param]
    return request.param, make(tmp_path_factory.mktemp("container")), frames


def test_index_holds_exactly_the_frames_a_decoder_presents(case):
    name, path, frames = case
    probe(path)  # accepted at upload
    index = index_frames(path)
    pts, _ = _full_decode(path)
    assert len(index) == frames, name
    assert index.pts == pts, name
    assert index.timestamp(index.pts[0]) == 0.0
    assert [index.timestamp(p) for p in index.pts] == pytest.approx([i / corpus.FPS for i in range(frames)])


def test_index_agrees_with_ffprobe_count_frames(case):
    if shutil.which("ffprobe") is None:
        missing_tool("ffprobe is not installed (apt-get install ffmpeg)")
    name, path, frames = case
    assert _ffprobe_count(path) == len(index_frames(path)) == frames, name


@pytest.mark.parametrize("chunk_frames", [1, 7, 10])
def test_every_chunk_decoded_on_its_own_equals_one_pass(case, chunk_frames):
    name, path, _ = case
    index = index_frames(path)
    _, reference = _full_decode(path)
    stats = DecodeStats()
    decoded = []
    for plan in plan_chunks(index, chunk_frames):
        chunk = list(decode_frames(path, plan.seek_pts, plan.frame_pts, stats))
        assert len(chunk) == plan.frame_count, (name, plan.index)
        decoded += chunk
    assert len(decoded) == len(reference)
    for i, (got, want) in enumerate(zip(decoded, reference, strict=True)):
        assert np.array_equal(got, want), (name, chunk_frames, i)


def test_the_trimmed_mp4_is_what_ffmpeg_stream_copy_writes(tmp_path):
    """The generator must keep making the file of the issue, or the tests above prove nothing."""
    path = corpus.trimmed_mp4(tmp_path)
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    discarded = [p for p in packets if p.is_discard]
    assert len(packets) == 75 and len(discarded) == 18
    assert packets[0].is_keyframe and packets[0].is_discard and packets[0].pts < 0
    assert any(b.pts < a.pts for a, b in itertools.pairwise(packets)), "no B-frames"


def test_mpegts_cut_mid_gop_starts_with_frames_no_decoder_presents(tmp_path):
    path = corpus.mpegts_cut_mid_gop(tmp_path)
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    assert not packets[0].is_keyframe
    assert len(packets) > len(index_frames(path))


@pytest.mark.parametrize(
    "make, message",
    [
        (corpus.raw_h264, "the video's frames carry no timestamps"),
        (corpus.bframes_avi, "out of timestamp order (B-frames in an AVI file?)"),
    ],
)
def test_refused_by_probe_with_a_clear_message(tmp_path, make, message):
    with pytest.raises(VideoError, match=re.escape(message)):
        probe(make(tmp_path))


def test_out_of_order_frames_are_an_error_when_decoding(tmp_path):
    """Were such a file accepted (probe decodes a few frames only), workers say why."""
    path = corpus.bframes_avi(tmp_path)
    index = index_frames(path)
    with pytest.raises(VideoError, match=r"out of timestamp order|could not be decoded"):
        list(decode_frames(path, index.pts[0], index.pts))
