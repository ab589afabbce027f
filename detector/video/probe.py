"""Read what a video is before any work is done on it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av

StrPath = str | os.PathLike[str]


class VideoError(ValueError):
    """The file is not a video the service can read; the message says why."""


class NotAVideoError(VideoError):
    """The file is no media container at all, or has no video stream."""


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

    Decodes the first frame (proving the codec works). The frame count comes from
    the container header, or duration x fps where the header has none; the exact
    count is taken later by `index_frames`.

    Raises:
        VideoError: not a container, no video stream, no decodable frame, or a
            frame larger than ``max_pixels``.
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
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise VideoError(f"the video stream cannot be decoded ({ctx.name})") from exc
        if first is None:
            raise VideoError("the video has no decodable frames")
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


@dataclass(frozen=True)
class FrameIndex:
    """Every frame of a video in presentation order, from its packets (no decoding).

    ``pts[i]`` is frame i's presentation timestamp in ``time_base`` units and
    ``keyframes`` the (sorted) frame indices that decoding can start from.
    """

    pts: list[int]
    keyframes: list[int]
    time_base: Fraction

    def __len__(self) -> int:
        return len(self.pts)

    def timestamp(self, pts: int) -> float:
        """Seconds since the first frame."""
        return round(float((pts - self.pts[0]) * self.time_base), 6)


def index_frames(path: StrPath) -> FrameIndex:
    """Demux the first video stream and list its frames, exactly, with keyframes.

    Header frame counts and rates can be wrong (variable frame rate, missing
    durations); the packets are not. Reading them costs a demux, not a decode.
    """
    with _open(path) as container:
        stream = _video_stream(container)
        packets: list[tuple[int, bool]] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                pts = packet.pts if packet.pts is not None else packet.dts
                if pts is None:
                    raise VideoError("the video's frames carry no timestamps")
                packets.append((pts, bool(packet.is_keyframe)))
        except av.FFmpegError as exc:
            if not packets:
                raise VideoError("the video stream cannot be read") from exc
            # A damaged tail: keep the frames before it, decoding will tell the rest.
        if not packets:
            raise VideoError("the video has no frames")
        packets.sort(key=lambda p: p[0])
        timestamps = [p for p, _ in packets]
        keyframes = [i for i, (_, key) in enumerate(packets) if key] or [0]
        if keyframes[0] != 0:
            keyframes.insert(0, 0)
        time_base = stream.time_base or Fraction(1, 1)
        return FrameIndex(pts=timestamps, keyframes=keyframes, time_base=Fraction(time_base))
