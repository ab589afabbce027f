"""Read what a video is before any work is done on it."""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from typing import BinaryIO, Protocol, runtime_checkable

import av
import numpy as np


@runtime_checkable
class ByteSource(Protocol):
    """A stored file that is not on the local filesystem (an object in a bucket): each
    ``open()`` gives a new seekable, read-only binary file of its bytes."""

    @property
    def size(self) -> int:
        """The file's length in bytes."""

    def open(self) -> BinaryIO:
        """A new seekable, read-only binary file at offset 0; the caller closes it."""


StrPath = str | os.PathLike[str]
# What the readers here open: a local path, or a stored file read through ``open()``.
VideoSource = StrPath | ByteSource


class VideoError(ValueError):
    """The file is not a video the service can read; the message says why."""


class NotAVideoError(VideoError):
    """The file is no media container at all, or has no video stream."""


OUT_OF_ORDER = (
    "the decoder presents the video's frames out of timestamp order "
    "(B-frames in an AVI file?); remux it into MP4 or MKV"
)

# Frames that `probe` decodes: enough to see B-frames reordered.
_PROBE_FRAMES = 8


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream (frame count may be an estimate)."""

    codec: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    rotation: int

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "duration": self.duration,
            "rotation": self.rotation,
        }


@contextlib.contextmanager
def open_container(source: VideoSource) -> Iterator[av.container.InputContainer]:
    """The source opened by PyAV: a path by FFmpeg's own file I/O, a ``ByteSource``
    through the file object it opens (closed with the container)."""
    with contextlib.ExitStack() as stack:
        if isinstance(source, ByteSource):
            target: str | BinaryIO = stack.enter_context(source.open())
        else:
            target = os.fspath(source)
        try:
            container = av.open(target, mode="r")
        except (av.FFmpegError, UnicodeDecodeError) as exc:
            raise NotAVideoError("the file is not a readable video container") from exc
        with container:
            yield container


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    if not container.streams.video:
        raise NotAVideoError("the file has no video stream")
    return container.streams.video[0]


def probe(path: VideoSource, max_pixels: int | None = None) -> VideoInfo:
    """Check that ``path`` holds a decodable video and read its metadata.

    Decodes the first few frames (proving the codec works, and that frames carry
    timestamps that the decoder presents in order). The frame count comes from
    the container header, or duration x fps where the header has none; the exact
    count is taken later by `index_frames`.

    Raises:
        VideoError: not a container, no video stream, no decodable frame, a
            frame larger than ``max_pixels``, frames without timestamps or out
            of timestamp order.
    """
    with open_container(path) as container:
        stream = _video_stream(container)
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if not width or not height:
            raise VideoError("the video stream has no frame size")
        if max_pixels is not None and width * height > max_pixels:
            raise VideoError(
                f"frames of {width}x{height} are larger than this service accepts ({max_pixels} pixels)"
            )
        first, stamps = _first_frames(container, stream)
        if first.pts is None:
            # A raw stream (an .h264 file, say): frames cannot be told apart or timed.
            raise VideoError("the video's frames carry no timestamps (put it in a container such as MP4)")
        if stamps != sorted(stamps):
            raise VideoError(OUT_OF_ORDER)
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        fps = float(rate)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        frame_count = stream.frames or (round(duration * fps) if fps and duration else 1)
        return VideoInfo(
            codec=ctx.name,
            width=width,
            height=height,
            fps=round(fps, 6),
            frame_count=int(frame_count),
            duration=round(duration, 6),
            rotation=int(getattr(first, "rotation", 0) or 0) % 360,
        )


def _first_frames(
    container: av.container.InputContainer, stream: av.VideoStream
) -> tuple[av.VideoFrame, list[int]]:
    """The first decoded frame, and the timestamps of the first `_PROBE_FRAMES`.

    Only the first frame must decode: damage further on is for the job to report.
    """
    first: av.VideoFrame | None = None
    stamps: list[int] = []
    try:
        for frame in islice(container.decode(stream), _PROBE_FRAMES):
            first = first or frame
            if frame.pts is not None:
                stamps.append(frame.pts)
    except av.FFmpegError as exc:
        if first is None:
            raise VideoError(f"the video stream cannot be decoded ({stream.codec_context.name})") from exc
    if first is None:
        raise VideoError("the video has no decodable frames")
    return first, stamps


@dataclass(frozen=True)
class FrameIndex:
    """Every frame a decoder presents, in presentation order.

    ``pts[i]`` is frame i's presentation timestamp in ``time_base`` units and
    ``keyframes`` the (sorted) frame indices that decoding can start from: frame 0
    always (a backward seek to it lands at or before it) and every presented
    keyframe.
    """

    pts: list[int]
    keyframes: list[int]
    time_base: Fraction

    def __len__(self) -> int:
        return len(self.pts)

    def timestamp(self, pts: int) -> float:
        """Seconds since the first presented frame (which is at 0.0)."""
        # Whole numbers, then one division: Python divides ints correctly rounded, so
        # this is float() of the Fraction, without a Fraction's cost.
        return round((pts - self.pts[0]) * self.time_base.numerator / self.time_base.denominator, 6)

    def timestamps(self) -> Iterator[float]:
        """Every frame's `timestamp`, in presentation order, one at a time."""
        first, numerator, denominator = self.pts[0], self.time_base.numerator, self.time_base.denominator
        return (round((pts - first) * numerator / denominator, 6) for pts in self.pts)


class _Packets:
    """A stream's packets in decode order, a few bytes each (no Python object per
    packet: a two-hour video has hundreds of thousands): each one's presentation
    timestamp (its decode timestamp where a container has none; 0 where it has
    neither), whether it has one, whether it is a keyframe, and whether the
    container marks it "discard"."""

    def __init__(self) -> None:
        self.pts = array("q")
        self.timed = bytearray()
        self.keyframe = bytearray()
        self.discard = bytearray()

    def __len__(self) -> int:
        return len(self.pts)


def index_frames(path: VideoSource) -> FrameIndex:
    """List the frames a decoder presents for the first video stream, with keyframes.

    Header frame counts and rates can be wrong (variable frame rate, missing
    durations), so the frames are read from the packets, which costs a demux, not
    a decode. A packet is not always a presented frame, though:

    * packets that the container marks "discard" (an MP4 edit list, as
      ``ffmpeg -ss ... -c copy`` writes one, hides the frames before the cut) are
      decoded as references but never presented;
    * packets without any timestamp never become a frame that can be told apart;
    * what comes before the first keyframe in decode order (a file cut mid-GOP,
      the leading pictures of an open GOP at the start) is up to the decoder.

    So the start of the stream, up to the first keyframe's timestamp, is decoded
    to see what the decoder presents there; from that keyframe on, every packet
    that is not marked discard is a frame. The rest of the file is not decoded.

    Raises:
        VideoError: no video stream, no frames, frames without timestamps, or a
            start that cannot be decoded.
    """
    with open_container(path) as container:
        stream = _video_stream(container)
        time_base = Fraction(stream.time_base or Fraction(1, 1))
        packets = _read_packets(container, stream)
    pts = np.frombuffer(packets.pts, dtype=np.int64)
    timed = np.frombuffer(packets.timed, dtype=np.bool_)
    keyframe = np.frombuffer(packets.keyframe, dtype=np.bool_)
    discard = np.frombuffer(packets.discard, dtype=np.bool_)
    timed_keys = np.flatnonzero(keyframe & timed)
    cutoff = int(pts[timed_keys[0]]) if len(timed_keys) else None
    head, reached_cutoff = _presented_before(path, cutoff)
    frame_pts = np.array(head, dtype=np.int64)
    frame_keys = np.zeros(len(head), dtype=np.bool_)
    if reached_cutoff:
        assert cutoff is not None
        kept = timed & (pts >= cutoff) & ~discard
        frame_pts = np.concatenate([frame_pts, pts[kept]])
        frame_keys = np.concatenate([frame_keys, keyframe[kept]])
    if not len(frame_pts):
        if len(packets) and not timed.any():
            raise VideoError("the video's frames carry no timestamps")
        raise VideoError("the video has no decodable frames")
    order = np.argsort(frame_pts, kind="stable")
    keyframes = np.flatnonzero(frame_keys[order]).tolist()
    if not keyframes or keyframes[0] != 0:
        keyframes.insert(0, 0)
    return FrameIndex(pts=frame_pts[order].tolist(), keyframes=keyframes, time_base=time_base)


def _read_packets(container: av.container.InputContainer, stream: av.VideoStream) -> _Packets:
    """The stream's packets in decode order (a damaged tail ends the list early)."""
    packets = _Packets()
    # The arrays' appends, bound once: this loop runs once per packet of the video.
    add_pts, add_timed = packets.pts.append, packets.timed.append
    add_keyframe, add_discard = packets.keyframe.append, packets.discard.append
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            pts = packet.pts if packet.pts is not None else packet.dts
            add_pts(0 if pts is None else pts)
            add_timed(pts is not None)
            add_keyframe(packet.is_keyframe)
            add_discard(packet.is_discard)
    except av.FFmpegError as exc:
        if not packets:
            raise VideoError("the video stream cannot be read") from exc
        # A damaged tail: keep the packets before it, decoding will tell the rest.
    if not packets:
        raise VideoError("the video has no frames")
    return packets


def _presented_before(path: VideoSource, cutoff: int | None) -> tuple[list[int], bool]:
    """Decode from the start until the decoder presents a frame at or after ``cutoff``.

    Returns the timestamps of the frames presented before ``cutoff`` and whether a
    frame at or after it was reached (with no cutoff, the whole stream is decoded).
    A decoder presents frames in timestamp order, so once one at or after the
    cutoff comes out, every earlier frame has been seen.
    """
    presented: list[int] = []
    with open_container(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue  # decode_frames cannot deliver it either
                if cutoff is not None and frame.pts >= cutoff:
                    return presented, True
                presented.append(frame.pts)
        except av.FFmpegError as exc:
            raise VideoError(f"the start of the video cannot be decoded: {exc}") from exc
    return presented, False
