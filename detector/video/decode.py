"""Decode a chunk's frames: seek to the keyframe before it, decode forward."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from detector.video.probe import VideoError, _open, _video_stream


@dataclass
class DecodeStats:
    """Frames decoded versus delivered: the extra is what seeking to a chunk start costs."""

    decoded: int = 0
    delivered: int = 0


def decode_frames(
    path: str | os.PathLike[str],
    seek_pts: int,
    frame_pts: list[int],
    stats: DecodeStats | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frames whose timestamps are ``frame_pts``, in order, as BGR arrays.

    Each frame is yielded exactly once. Decoding starts at the keyframe at
    ``seek_pts``; frames before the first wanted one are decoded and dropped.

    Raises:
        VideoError: a wanted frame could not be decoded.
    """
    if frame_pts:
        yield from _decode(path, seek_pts, frame_pts, stats if stats is not None else DecodeStats())


def _decode(
    path: str | os.PathLike[str], seek_pts: int | None, frame_pts: list[int], stats: DecodeStats
) -> Iterator[np.ndarray]:
    first, last = frame_pts[0], frame_pts[-1]
    wanted = iter(frame_pts)
    expected = next(wanted)
    with _open(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        if seek_pts is not None:
            container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
        landed: int | None = None
        try:
            for frame in container.decode(stream):
                pts = frame.pts
                stats.decoded += 1
                if pts is None:
                    continue
                if landed is None:
                    landed = pts
                    if landed > first and seek_pts is not None:
                        # The demuxer's seek overshot (it happens on some files):
                        # decode this chunk again from the start of the stream.
                        yield from _decode(path, None, frame_pts, stats)
                        return
                if pts < expected:
                    continue
                if pts > expected:
                    raise VideoError(
                        f"frame at timestamp {expected} could not be decoded "
                        f"(next decodable frame is at {pts})"
                    )
                stats.delivered += 1
                yield frame.to_ndarray(format="bgr24", threads=1)
                if pts == last:
                    return
                expected = next(wanted)
        except av.FFmpegError as exc:
            raise VideoError(f"decoding failed near timestamp {expected}: {exc}") from exc
    raise VideoError(
        f"the video ended before the frame at timestamp {expected} "
        f"({len(frame_pts) - stats.delivered} of {len(frame_pts)} frames missing)"
    )
