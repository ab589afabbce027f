"""Container edge cases, generated with PyAV (no binaries in the repository, no ffmpeg).

Each generator writes one file into ``folder`` and returns its path. Used by
tests/video/test_containers.py and by the bad-input corpus of tests/api/test_bad_input.py.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from detector.video.synthetic import make_video, trim_stream_copy

WIDTH, HEIGHT, FPS = 160, 120, 25


def _source(folder: Path, name: str = "source.mp4", frames: int = 75, **options) -> Path:
    return make_video(folder / name, frames=frames, width=WIDTH, height=HEIGHT, fps=FPS, **options)


def _remux(source: Path, path: Path, shift_seconds: float = 0, **open_options) -> Path:
    """Copy the video packets of ``source`` into ``path`` (its container by name),
    with timestamps moved later by ``shift_seconds``."""
    with av.open(str(source)) as src, av.open(str(path), "w", **open_options) as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        shift = round(Fraction(shift_seconds) / video.time_base)
        for packet in src.demux(video):
            if packet.dts is None:
                continue  # the demuxer's end-of-stream marker
            if packet.pts is not None:
                packet.pts += shift
            packet.dts += shift
            packet.stream = stream
            out.mux(packet)
    return path


def trimmed_mp4(folder: Path) -> Path:
    """75 frames with B-frames, cut at 0.7 s by stream copy (``ffmpeg -ss 0.7 -i in.mp4
    -c copy out.mp4``): an edit list hides the 18 frames before the cut, whose packets
    are marked discard and have negative timestamps. A decoder presents 57 frames."""
    return trim_stream_copy(_source(folder), folder / "trimmed.mp4", Fraction(7, 10))


def trimmed_both_ends_mp4(folder: Path) -> Path:
    """Cut from 0.7 s to 2 s by stream copy: discarded packets at the start only."""
    return trim_stream_copy(_source(folder), folder / "trimmed-both.mp4", Fraction(7, 10), Fraction(2))


def trimmed_open_gop_mp4(folder: Path) -> Path:
    """An open-GOP video (keyframes every 12 frames) cut at 0.7 s by stream copy."""
    source = _source(folder, "open-gop-source.mp4", gop=12, open_gop=True)
    return trim_stream_copy(source, folder / "trimmed-open-gop.mp4", Fraction(7, 10))


def bframes_mp4(folder: Path) -> Path:
    """B-frames, not trimmed: decode order differs from presentation order."""
    return _source(folder, "bframes.mp4", frames=40, gop=12)


def open_gop_mp4(folder: Path) -> Path:
    """Open GOPs: the B-frames just before each keyframe refer to the GOP before it."""
    return _source(folder, "open-gop.mp4", frames=50, gop=12, open_gop=True)


def faststart_mp4(folder: Path) -> Path:
    """The index (moov) before the frames, as streaming sites write MP4 files."""
    path = _remux(
        _source(folder, frames=40, gop=12), folder / "faststart.mp4", options={"movflags": "faststart"}
    )
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    return path


def start_time_mkv(folder: Path) -> Path:
    """H.264 with B-frames in Matroska starting at 5 s: blocks carry a timestamp
    each, no duration (only the last one's is known)."""
    return _remux(_source(folder, frames=40, gop=12), folder / "start-at-5s.mkv", shift_seconds=5)


def start_time_mp4(folder: Path) -> Path:
    """An MP4 whose video starts at 5 s (an empty edit before it)."""
    return _remux(_source(folder, frames=40, gop=12), folder / "start-at-5s.mp4", shift_seconds=5)


def audio_first_mp4(folder: Path) -> Path:
    """Audio from 0 s, video from 0.5 s, interleaved in one MP4."""
    source = _source(folder, frames=40, gop=12)
    path = folder / "audio-first.mp4"
    rate = 8000
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        video = src.streams.video[0]
        vstream = out.add_stream_from_template(video)
        astream = out.add_stream("aac", rate=rate)
        samples = (np.sin(np.arange(rate * 3) / 5) * 0.2).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in [*astream.encode(frame), *astream.encode()]:
            out.mux(packet)
        shift = round(Fraction(1, 2) / video.time_base)
        for packet in src.demux(video):
            if packet.dts is not None and packet.pts is not None:
                packet.pts += shift
                packet.dts += shift
                packet.stream = vstream
                out.mux(packet)
    return path


def mpegts(folder: Path) -> Path:
    """H.264 with B-frames in MPEG-TS (starts at 1.4 s; seeks by decode timestamp
    and lands after the keyframe asked for)."""
    return _remux(_source(folder, frames=60, gop=12), folder / "clip.ts")


def open_gop_mpegts(folder: Path) -> Path:
    """Open GOPs in MPEG-TS: a seek lands after the keyframe and is tried again
    earlier, so decoding skips the packets before the keyframe, and the B-frames
    that follow it refer to frames that were never decoded."""
    return _remux(open_gop_mp4(folder), folder / "open-gop.ts")


def mpegts_cut_mid_gop(folder: Path) -> Path:
    """An MPEG-TS recording whose first bytes are gone: it starts at a P-frame in the
    middle of a GOP, so the decoder presents nothing before the next keyframe."""
    path = mpegts(folder)
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    start = next(p for p in packets[18:] if not p.is_keyframe)  # the middle of the second GOP
    assert start.pos is not None and start.pos % 188 == 0
    cut = folder / "cut-mid-gop.ts"
    cut.write_bytes(path.read_bytes()[start.pos :])
    return cut


def raw_h264(folder: Path) -> Path:
    """A bare H.264 stream (Annex B): no container, no timestamps."""
    return _remux(_source(folder, frames=20, gop=10), folder / "clip.h264", format="h264")


def bframes_avi(folder: Path) -> Path:
    """H.264 with B-frames in AVI, which has no presentation timestamps: the
    decoder's frames come out with timestamps out of order."""
    return _source(folder, "bframes.avi", frames=20, gop=10, container_format="avi")
