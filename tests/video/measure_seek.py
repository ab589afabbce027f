"""What a chunk's seek costs on a video with B-frames (by default a variable-rate MP4):
frames decoded per chunk and seconds, with and without skipping the packets before
the chunk's keyframe.

Run it by hand (it is no test):
``.venv/bin/python -m tests.video.measure_seek [FRAMES] [CHUNK_FRAMES] [GOP] [mp4|mkv|ts] [vfr|cfr]``
(defaults 300, 25, 12, mp4, vfr). The video (640x360; vfr: frame durations drawn
from 40, 100, 150 and 330 ms, as tests/video/test_chunks.py makes them; cfr: 25
frames a second) is written to a scratch folder, as MP4 or copied into MKV or MPEG-TS.
"seek only" passes every packet after the seek to the decoder, as decoding did
before the skip (decode.py's `_from_keyframe` replaced by the identity); "seek,
skip" is decode.py as it is. Seconds are the best of three passes over all
chunks (indexing excluded).
"""

from __future__ import annotations

import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import av

from detector.video import DecodeStats, decode_frames, index_frames, plan_chunks
from detector.video.synthetic import make_video
from tests.video.corpus import _remux

USAGE = ".venv/bin/python -m tests.video.measure_seek [FRAMES] [CHUNK_FRAMES] [GOP] [mp4|mkv|ts] [vfr|cfr]"


def _video(folder: Path, frames: int, gop: int, container: str, rate: str) -> Path:
    if rate == "cfr":
        path = make_video(folder / "v.mp4", frames=frames, width=640, height=360, fps=25, gop=gop)
    else:
        rng = random.Random(11)
        pts = [0]
        for _ in range(frames - 1):
            pts.append(pts[-1] + rng.choice([40, 100, 150, 330]))
        path = make_video(folder / "v.mp4", frames=frames, width=640, height=360, fps=10, gop=gop, pts=pts)
    return path if container == "mp4" else _remux(path, folder / f"v.{container}")


def _no_skip(packets: Iterator[av.Packet], seek_pts: int) -> Iterator[av.Packet]:
    return packets


def _decode(path: Path, chunk_frames: int) -> tuple[list[int], int, float]:
    """Frames decoded by each chunk, frames delivered, best seconds of three."""
    index = index_frames(path)
    plans = plan_chunks(index, chunk_frames)
    best = float("inf")
    for _ in range(3):
        per_chunk, delivered = [], 0
        started = time.perf_counter()
        for plan in plans:
            stats = DecodeStats()
            for _ in decode_frames(path, plan.seek_pts, plan.frame_pts, stats):
                pass
            per_chunk.append(stats.decoded)
            delivered += stats.delivered
        best = min(best, time.perf_counter() - started)
    return per_chunk, delivered, best


def main(argv: list[str]) -> None:
    defaults: list[str] = ["300", "25", "12", "mp4", "vfr"]
    args = argv[:5] + defaults[len(argv[:5]) :]
    frames, chunk_frames, gop = (int(a) for a in args[:3])
    container, rate = args[3:]
    if container not in ("mp4", "mkv", "ts") or rate not in ("vfr", "cfr"):
        raise SystemExit(f"usage: {USAGE}")
    with tempfile.TemporaryDirectory() as folder:
        path = _video(Path(folder), frames, gop, container, rate)
        print(f"{rate} {container}: {frames} frames, chunks of {chunk_frames}, a keyframe every {gop}")
        for name, patch in (
            ("seek only", mock.patch("detector.video.decode._from_keyframe", _no_skip)),
            ("seek, skip", contextlib.nullcontext()),
        ):
            with patch:
                per_chunk, delivered, seconds = _decode(path, chunk_frames)
            print(
                f"{name:10s}: decoded {sum(per_chunk)} for {delivered} delivered "
                f"({sum(per_chunk) / delivered:.2f}), {seconds:.3f} s; per chunk {per_chunk}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
