"""Decode a chunk's frames: seek to the keyframe before it, decode forward."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

import av
import numpy as np

from detector.video.probe import OUT_OF_ORDER, VideoError, VideoSource, _video_stream, open_container


@dataclass
class DecodeStats:
    """Frames decoded versus delivered: the extra is what seeking to a chunk start costs."""

    decoded: int = 0
    delivered: int = 0


def decode_frames(
    path: VideoSource,
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


# How far before ``seek_pts`` to seek again, in seconds, when a seek lands too late.
_STEP_BACK_SECONDS = (0, 1, 10)


def _decode(
    path: VideoSource, seek_pts: int, frame_pts: list[int], stats: DecodeStats
) -> Iterator[np.ndarray]:
    """Seek, check where decoding landed, and deliver the wanted frames.

    Some demuxers land after the keyframe that was asked for (MPEG-TS seeks by
    decode timestamp, which is earlier than the keyframe's presentation
    timestamp when there are B-frames), so the decoder's first frame comes after
    the chunk's first frame. Then the seek is tried again a little earlier, and
    in the end the chunk is decoded from the start of the stream.
    """
    first = frame_pts[0]
    with open_container(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        second = round(1 / stream.time_base) if stream.time_base else 1
        for back in _STEP_BACK_SECONDS:
            try:
                container.seek(seek_pts - back * second, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                continue
            frames = _frames(container, stream, stats)
            try:
                landed = next(frames, None)
            except av.FFmpegError as exc:
                raise VideoError(f"decoding failed near timestamp {first}: {exc}") from exc
            if landed is not None and landed[0] <= first:
                yield from _deliver(chain([landed], frames), frame_pts, stats)
                return
    with open_container(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        yield from _deliver(_frames(container, stream, stats), frame_pts, stats)


def _frames(
    container: av.container.InputContainer, stream: av.VideoStream, stats: DecodeStats
) -> Iterator[tuple[int, av.VideoFrame]]:
    """The decoder's frames and their timestamps from where the container is,
    skipping any frame without a timestamp.

    Raises:
        VideoError: the timestamps go backwards, so frames cannot be matched to
            the index (H.264 with B-frames in AVI, which has no presentation
            timestamps, comes out like this).
    """
    previous: int | None = None
    for frame in container.decode(stream):
        stats.decoded += 1
        pts = frame.pts
        if pts is None:
            continue
        if previous is not None and pts < previous:
            raise VideoError(OUT_OF_ORDER)
        previous = pts
        yield pts, frame


def _deliver(
    frames: Iterator[tuple[int, av.VideoFrame]], frame_pts: list[int], stats: DecodeStats
) -> Iterator[np.ndarray]:
    """Pick the wanted frames out of ``frames`` (which starts at or before the first one)."""
    for delivered, expected in enumerate(frame_pts):
        try:
            pts, frame = next(((p, f) for p, f in frames if p >= expected), (None, None))
        except av.FFmpegError as exc:
            raise VideoError(f"decoding failed near timestamp {expected}: {exc}") from exc
        if pts is None or frame is None:
            raise VideoError(
                f"the video ended before the frame at timestamp {expected} "
                f"({len(frame_pts) - delivered} of {len(frame_pts)} frames missing)"
            )
        if pts > expected:
            raise VideoError(
                f"frame at timestamp {expected} could not be decoded (next decodable frame is at {pts})"
            )
        stats.delivered += 1
        yield frame.to_ndarray(format="bgr24", threads=1)
