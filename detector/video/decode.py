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
    Where a seek lands before that keyframe, the packets before it are read
    but not decoded.

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

    Others land before it: MP4 compares the target with each keyframe's decode
    timestamp shifted by one constant (the first frame's reordering delay), and
    on a variable frame rate with B-frames that can be later than the
    keyframe's presentation timestamp, so the seek lands on the keyframe
    before, a GOP early. So after every seek the packets before the keyframe at
    ``seek_pts`` are skipped, not decoded, where that keyframe comes
    (`_from_keyframe`). The decode from the start of the stream skips nothing.
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
            frames = _frames(_from_keyframe(container.demux(stream), seek_pts), stats)
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
        yield from _deliver(_frames(container.demux(stream), stats), frame_pts, stats)


def _from_keyframe(packets: Iterator[av.Packet], seek_pts: int) -> Iterator[av.Packet]:
    """``packets`` (a video stream's, in decode order), less those before the
    keyframe whose presentation timestamp is ``seek_pts``.

    The packets are held back until that keyframe comes, and then dropped: the
    decoder never sees them, and starts at the keyframe as it would had the seek
    landed on it. Where a packet shows that the keyframe cannot come any more
    (`_past`) first, every packet is passed on as read, and the decoder starts
    where the seek landed. So at most the packets from there to the keyframe
    are held, and a file that breaks `_past`'s rule only loses the skip.
    """
    held: list[av.Packet] = []
    for packet in packets:
        if packet.is_keyframe and packet.pts == seek_pts:
            held.clear()
            yield packet
            break
        held.append(packet)
        if _past(packet, seek_pts):
            yield from held
            held.clear()
            break
    yield from held
    yield from packets


def _past(packet: av.Packet, seek_pts: int) -> bool:
    """``packet`` comes after the keyframe at ``seek_pts`` in decode order, or
    ends the stream: it is decoded after ``seek_pts`` (a frame is decoded no
    later than it is presented), or is a later keyframe (keyframes are decoded
    in presentation order)."""
    if packet.size == 0:
        return True  # the demuxer's end-of-stream marker
    if packet.dts is not None and packet.dts > seek_pts:
        return True
    return packet.is_keyframe and packet.pts is not None and packet.pts > seek_pts


def _frames(packets: Iterator[av.Packet], stats: DecodeStats) -> Iterator[tuple[int, av.VideoFrame]]:
    """The frames that ``packets`` decode to and their timestamps, skipping any
    frame without a timestamp.

    Raises:
        VideoError: the timestamps go backwards, so frames cannot be matched to
            the index (H.264 with B-frames in AVI, which has no presentation
            timestamps, comes out like this).
    """
    previous: int | None = None
    for frame in chain.from_iterable(packet.decode() for packet in packets):
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
