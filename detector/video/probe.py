"""Read what a video is before any work is done on it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice

import av

StrPath = str | os.PathLike[str]


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


def _open(path: StrPath) -> av.container.InputContainer:
    try:
        return av.open(os.fspath(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise NotAVideoError("the file is not a readable video container") from exc


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    if not container.streams.video:
        raise NotAVideoError("the file has no video stream")
    return container.streams.video[0]


def probe(path: StrPath, max_pixels: int | None = None) -> VideoInfo:
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
    with _open(path) as container:
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
        return round(float((pts - self.pts[0]) * self.time_base), 6)


@dataclass(frozen=True)
class _Packet:
    pts: int | None  # the presentation timestamp (the decode timestamp where a container has none)
    keyframe: bool
    discard: bool


def index_frames(path: StrPath) -> FrameIndex:
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
    with _open(path) as container:
        stream = _video_stream(container)
        time_base = Fraction(stream.time_base or Fraction(1, 1))
        packets = _read_packets(container, stream)
    cutoff = next((p.pts for p in packets if p.keyframe and p.pts is not None), None)
    head, reached_cutoff = _presented_before(path, cutoff)
    frames = [(pts, False) for pts in head]
    if reached_cutoff:
        assert cutoff is not None
        frames += [
            (p.pts, p.keyframe) for p in packets if p.pts is not None and p.pts >= cutoff and not p.discard
        ]
    if not frames:
        if packets and all(p.pts is None for p in packets):
            raise VideoError("the video's frames carry no timestamps")
        raise VideoError("the video has no decodable frames")
    frames.sort(key=lambda f: f[0])
    keyframes = [i for i, (_, key) in enumerate(frames) if key]
    if not keyframes or keyframes[0] != 0:
        keyframes.insert(0, 0)
    return FrameIndex(pts=[pts for pts, _ in frames], keyframes=keyframes, time_base=time_base)


def _read_packets(container: av.container.InputContainer, stream: av.VideoStream) -> list[_Packet]:
    """The stream's packets in decode order (a damaged tail ends the list early)."""
    packets: list[_Packet] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            pts = packet.pts if packet.pts is not None else packet.dts
            packets.append(_Packet(pts, bool(packet.is_keyframe), bool(packet.is_discard)))
    except av.FFmpegError as exc:
        if not packets:
            raise VideoError("the video stream cannot be read") from exc
        # A damaged tail: keep the packets before it, decoding will tell the rest.
    if not packets:
        raise VideoError("the video has no frames")
    return packets


def _presented_before(path: StrPath, cutoff: int | None) -> tuple[list[int], bool]:
    """Decode from the start until the decoder presents a frame at or after ``cutoff``.

    Returns the timestamps of the frames presented before ``cutoff`` and whether a
    frame at or after it was reached (with no cutoff, the whole stream is decoded).
    A decoder presents frames in timestamp order, so once one at or after the
    cutoff comes out, every earlier frame has been seen.
    """
    presented: list[int] = []
    with _open(path) as container:
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
