"""Render a job's detections into a copy of its video that every browser plays."""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, cast

import av
import cv2
import numpy as np

from detector.detection.detections import AnalysedFrame, Detections
from detector.render.draw import Overlay, Style, draw_objects_yuv420p, draw_overlay_yuv420p
from detector.video import VideoError, VideoSource, index_frames, probe
from detector.video.probe import open_container

LIBX264 = "libx264"
NVENC = "h264_nvenc"
# x264's constant quality (lower is better and larger; 23 is its own default) and speed.
CRF = 23
PRESET = "veryfast"
LIBX264_OPTIONS = {"crf": str(CRF), "preset": PRESET}
# NVENC in constant-quality mode at about the same quality, middle speed preset.
NVENC_OPTIONS = {"preset": "p4", "rc": "vbr", "cq": str(CRF)}
# on_progress is called after every this many frames, and once at the end.
PROGRESS_EVERY = 50
# Audio codecs that MP4 carries and browsers play: their packets are copied as they are.
# Anything else (PCM, Vorbis, AMR...) is transcoded to AAC at AUDIO_BIT_RATE.
COPY_AUDIO_CODECS = frozenset({"aac", "mp3", "opus", "ac3", "eac3", "flac"})
AUDIO_BIT_RATE = 128_000
_AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})

_FULL_RANGE = 2  # AVCOL_RANGE_JPEG

# Display rotation (degrees counter-clockwise, as `probe` reports it) -> the turn that
# makes stored pixels upright.
_ROTATE = {
    90: cv2.ROTATE_90_COUNTERCLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_CLOCKWISE,
}


class RenderError(ValueError):
    """The render cannot be done as asked (bad arguments, no usable encoder); the message says why.

    A source that cannot be read raises `detector.video.VideoError` instead.
    """


@dataclass(frozen=True)
class RenderStats:
    """What one render wrote.

    ``frames`` is the frames written and ``frames_total`` the frames the source
    has (they differ only when the source's end cannot be decoded); ``audio`` is
    ``"copied"`` or ``"transcoded"`` (to AAC), or None when there is no audio.
    """

    frames: int
    frames_total: int
    seconds: float
    encoder: str
    bytes: int
    width: int
    height: int
    audio: Literal["copied", "transcoded"] | None

    @property
    def fps(self) -> float:
        """Frames rendered per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def render_video(
    src: VideoSource,
    dst: Path,
    frames: Iterable[AnalysedFrame],
    *,
    hold_frames: int = 1,
    encoder: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    overlay: Callable[[int], Overlay | None] | None = None,
) -> RenderStats:
    """Write ``dst``: the video ``src`` with each analysed frame's detections drawn on it.

    ``frames`` are the analysed frames in frame order, each an `AnalysedFrame`
    whose index numbers the frames `index_frames` lists and whose detections'
    boxes are in pixels of the stored frame. They are read once, lazily, in
    step with the decoding. An analysed frame's boxes are drawn
    on it and on the frames after it until the next analysed frame, but on no
    more than ``hold_frames`` frames in all (the job's sampling gap: 1 draws each
    frame's own boxes only). Frames before the first analysed frame get none.

    The output plays in every browser: MP4 with the index (moov) before the media
    data, H.264 in yuv420p, even width and height (an odd one loses its last
    column or row), the display rotation applied to the pixels (after drawing, so
    boxes land where they belong) and no rotation tag. Each frame keeps its
    timestamp, moved so the first frame is at 0, so a variable frame rate
    survives. Audio is copied, moved by the same amount, when MP4 carries its
    codec, and transcoded to AAC otherwise.

    ``encoder`` None takes ``h264_nvenc`` when there is a CUDA GPU and NVENC
    opens on it, else ``libx264``; a name given is used or the render fails.
    ``on_progress(frames_written, frames_total)`` is called every
    `PROGRESS_EVERY` frames and at the end. ``overlay(frame_index)``, when given,
    is what else to draw on that frame (an analytics' zones, lines and counts).

    The file is written beside ``dst`` under a temporary name and renamed to
    ``dst`` when complete: a failed render leaves ``dst`` as it was.

    Raises:
        VideoError: ``src`` is not a video that can be read and decoded.
        RenderError: ``hold_frames`` below 1, frame indices not increasing, or
            the encoder asked for is not available.
    """
    if hold_frames < 1:
        raise RenderError(f"hold_frames must be at least 1, not {hold_frames}")
    started = time.monotonic()
    dst = Path(dst)
    info = probe(src)
    index = index_frames(src)
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(6)}.part")
    try:
        result = _render(
            src, tmp, index.pts, info.rotation, frames, hold_frames, encoder, on_progress, overlay
        )
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return RenderStats(
        frames=result.frames,
        frames_total=len(index),
        seconds=round(time.monotonic() - started, 3),
        encoder=result.encoder,
        bytes=size,
        width=result.width,
        height=result.height,
        audio=result.audio,
    )


@dataclass(frozen=True)
class _Result:
    frames: int
    encoder: str
    width: int
    height: int
    audio: Literal["copied", "transcoded"] | None


def _render(
    src: VideoSource,
    tmp: Path,
    index_pts: list[int],
    rotation: int,
    frames: Iterable[AnalysedFrame],
    hold_frames: int,
    encoder: str | None,
    on_progress: Callable[[int, int], None] | None,
    overlay: Callable[[int], Overlay | None] | None = None,
) -> _Result:
    """Decode ``src``, draw, encode into ``tmp``; the frames written and what was used."""
    rotation = (round(rotation / 90) * 90) % 360  # only quarter turns are applied
    with open_container(src) as source:
        vin = source.streams.video[0]
        vin.thread_type = "AUTO"
        ain = source.streams.audio[0] if source.streams.audio else None
        time_base = Fraction(vin.time_base or Fraction(1, 90000))
        rate = Fraction(vin.average_rate or vin.guessed_rate or 25)
        stored_w, stored_h = vin.codec_context.width, vin.codec_context.height
        shown_w, shown_h = (stored_h, stored_w) if rotation in (90, 270) else (stored_w, stored_h)
        width, height = shown_w - shown_w % 2, shown_h - shown_h % 2
        if width < 2 or height < 2:
            raise VideoError(f"frames of {stored_w}x{stored_h} are too small to encode")
        name, options = _choose_encoder(encoder, width, height, rate)
        composer = _Composer(rotation, stored_w, stored_h)
        held = _Held(frames, hold_frames)
        numbering = _Numbering(index_pts)
        total = len(index_pts)
        written = 0
        last_pts: int | None = None
        with av.open(
            os.fspath(tmp), mode="w", format="mp4", container_options={"movflags": "+faststart"}
        ) as out:
            vout = cast(
                av.VideoStream,
                out.add_stream(name, rate=rate, width=width, height=height, time_base=time_base),
            )
            vout.pix_fmt = "yuv420p"
            vout.options = dict(options)
            _copy_color_tags(vin.codec_context, vout.codec_context)
            audio = _Audio.create(out, ain, Fraction(index_pts[0]) * time_base) if ain else None

            def encode(frame: av.VideoFrame) -> None:
                nonlocal written, last_pts
                i = numbering.index_of(frame.pts) if frame.pts is not None else None
                if i is None:
                    return  # not a frame of the index (index_frames tells which are presented)
                image = composer.compose(frame, held.at(i), overlay(i) if overlay is not None else None)
                pts = frame.pts - index_pts[0] if frame.pts is not None else 0
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1  # the encoder needs strictly increasing timestamps
                image.pts, image.time_base, last_pts = pts, time_base, pts
                image.pict_type = av.video.frame.PictureType.NONE  # the encoder picks keyframes
                out.mux(vout.encode(image))
                written += 1
                if on_progress is not None and written % PROGRESS_EVERY == 0:
                    on_progress(written, total)

            for packet in _packets(source, [vin] if audio is None else [vin, audio.source]):
                if packet.stream.type == "audio":
                    assert audio is not None
                    audio.add(packet)
                    continue
                for frame in _decode(vin, packet, numbering.next_index):
                    encode(frame)
            for frame in _decode(vin, None, numbering.next_index):
                encode(frame)
            out.mux(vout.encode(None))
            if audio is not None:
                audio.flush()
        if on_progress is not None:
            on_progress(written, total)
    return _Result(written, name, width, height, audio.mode if audio is not None else None)


def _packets(container: av.container.InputContainer, streams: list[Any]) -> Iterator[av.Packet]:
    """The streams' packets in file order, without end-of-stream markers.

    A damaged tail ends the packets early (as `index_frames` reads them);
    damage before the first packet is an unreadable video.
    """
    demuxer = container.demux(*streams)
    first = True
    while True:
        try:
            packet = next(demuxer)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            if first:
                raise VideoError(f"the video cannot be read: {exc}") from exc
            return
        first = False
        if packet.size:
            yield packet


def _decode(stream: av.VideoStream, packet: av.Packet | None, near: int) -> list[av.VideoFrame]:
    """The frames one packet (None: the end of the stream) gives the decoder."""
    try:
        return stream.codec_context.decode(packet)
    except av.FFmpegError as exc:
        raise VideoError(f"the video cannot be decoded near frame {near}: {exc}") from exc


def _choose_encoder(
    requested: str | None, width: int, height: int, rate: Fraction
) -> tuple[str, dict[str, str]]:
    """The H.264 encoder to use and its options.

    None: NVENC when a CUDA GPU is present and the codec opens (chips without
    NVENC, such as the A100 and H100, or an old driver fail to open it), else
    libx264.
    """
    if requested is None:
        if NVENC in av.codecs_available and _cuda_present() and _opens(NVENC, width, height, rate):
            return NVENC, NVENC_OPTIONS
        return LIBX264, LIBX264_OPTIONS
    if requested not in av.codecs_available:
        raise RenderError(f"encoder {requested!r} is not available in this PyAV build")
    codec = av.Codec(requested, "w")
    if codec.canonical_name != "h264":
        raise RenderError(f"encoder {requested!r} does not write H.264 ({codec.canonical_name})")
    options = {LIBX264: LIBX264_OPTIONS, NVENC: NVENC_OPTIONS}.get(requested, {})
    if not _opens(requested, width, height, rate, options):
        raise RenderError(f"encoder {requested!r} cannot be opened on this machine")
    return requested, options


def _cuda_present() -> bool:
    """Whether this process sees a CUDA GPU, without importing torch.

    torch decides when the process has imported it already (the worker has);
    otherwise the NVIDIA driver's control device must exist.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return bool(torch.cuda.is_available())
        except Exception:
            return False
    return os.path.exists("/dev/nvidiactl")


def _opens(
    name: str, width: int, height: int, rate: Fraction, options: Mapping[str, str] | None = None
) -> bool:
    """Whether encoder ``name`` opens for frames of this size."""
    try:
        ctx = cast(av.VideoCodecContext, av.CodecContext.create(name, "w"))
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = 1 / rate
        ctx.framerate = rate
        ctx.options = dict(options if options is not None else NVENC_OPTIONS if name == NVENC else {})
        ctx.open()
    except (av.FFmpegError, ValueError, OSError):
        return False
    return True


def _copy_color_tags(src: Any, dst: Any) -> None:
    """Tag the output with the source's colour matrix, primaries and transfer, in limited range."""
    for name in ("colorspace", "color_primaries", "color_trc"):
        value = getattr(src, name, None)
        if isinstance(value, int):
            setattr(dst, name, value)
    dst.color_range = 1  # MPEG (limited), what yuv420p holds


class _Composer:
    """Turns a decoded frame into the frame to encode: in limited-range yuv420p,
    cut to even dimensions, turned upright, boxes drawn.

    The boxes, in stored-frame coordinates, are turned with the frame and drawn
    on the upright frame, so they land where they belong and their labels read
    upright. They are drawn straight on the Y, U and V planes: every pixel that no
    box covers keeps the value it was decoded with (no trip through RGB), and a
    frame with nothing to draw, cut or turn is passed on as decoded. An odd width
    or height loses the stored frame's last column or row (before turning),
    which keeps box coordinates and chroma samples where they were.
    """

    def __init__(self, rotation: int, stored_w: int, stored_h: int) -> None:
        self.rotation = rotation if rotation in _ROTATE else 0
        self.width, self.height = stored_w - stored_w % 2, stored_h - stored_h % 2
        self.reshape = self.rotation != 0 or (self.width, self.height) != (stored_w, stored_h)
        self.style = Style.for_size(stored_w, stored_h)

    def compose(self, frame: av.VideoFrame, found: Detections, extra: Overlay | None = None) -> av.VideoFrame:
        frame = _to_yuv420p(frame)
        if not len(found) and not self.reshape and extra is None:
            return frame
        w, h = self.width, self.height
        y, u, v = (_plane(frame, i) for i in range(3))
        y, u, v = y[:h, :w], u[: h // 2, : w // 2], v[: h // 2, : w // 2]
        if extra is not None:  # in stored-frame coordinates, so before turning
            draw_overlay_yuv420p(y, u, v, extra, self.style, frame.colorspace)
        if self.rotation:
            y, u, v = (cv2.rotate(plane, _ROTATE[self.rotation]) for plane in (y, u, v))
        if len(found):
            upright = self._turn(found) if self.rotation else found
            draw_objects_yuv420p(y, u, v, upright, self.style, frame.colorspace)
        out = _i420(np.ascontiguousarray(y), np.ascontiguousarray(u), np.ascontiguousarray(v))
        out.colorspace = frame.colorspace
        out.color_range = frame.color_range
        return out

    def _turn(self, found: Detections) -> Detections:
        """``found`` with its boxes in the upright frame's coordinates."""
        x1, y1, x2, y2 = found.xyxy.T
        right, bottom = self.width - 1, self.height - 1
        if self.rotation == 90:  # counter-clockwise: the stored left edge becomes the bottom
            turned = [y1, right - x2, y2, right - x1]
        elif self.rotation == 180:
            turned = [right - x2, bottom - y2, right - x1, bottom - y1]
        else:  # 270
            turned = [bottom - y2, x1, bottom - y1, x2]
        return replace(found, xyxy=np.stack(turned, axis=1))


def _to_yuv420p(frame: av.VideoFrame) -> av.VideoFrame:
    """``frame`` in yuv420p, limited range (full-range sources, such as MJPEG, are converted)."""
    full = frame.color_range == _FULL_RANGE or frame.format.name.startswith("yuvj")
    if frame.format.name == "yuv420p" and not full:
        return frame
    if full:
        return frame.reformat(format="yuv420p", src_color_range="JPEG", dst_color_range="MPEG")
    return frame.reformat(format="yuv420p")


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    """A copy of plane ``i`` (the decoder may still refer to the frame's own memory)."""
    plane = frame.planes[i]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width].copy()


def _i420(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    """A yuv420p frame from its planes (even width and height)."""
    height, width = y.shape
    data = np.empty((height * 3 // 2, width), dtype=np.uint8)
    data[:height] = y
    chroma = data[height:].reshape(-1)
    size = u.size
    chroma[:size] = u.reshape(-1)
    chroma[size:] = v.reshape(-1)
    return av.VideoFrame.from_ndarray(data, format="yuv420p")


class _Numbering:
    """Numbers decoded frames as `index_frames` does: frame i is the one whose
    timestamp is ``pts[i]``; a decoded frame not in the index gets no number."""

    def __init__(self, pts: list[int]) -> None:
        self.pts = pts
        self.next_index = 0

    def index_of(self, pts: int) -> int | None:
        while self.next_index < len(self.pts) and self.pts[self.next_index] < pts:
            self.next_index += 1  # a listed frame the decoder did not present
        if self.next_index < len(self.pts) and self.pts[self.next_index] == pts:
            self.next_index += 1
            return self.next_index - 1
        return None


class _Held:
    """The detections to draw on each frame, read from the analysed frames as the
    render reaches them: the last analysed frame's, for ``hold`` frames from it."""

    def __init__(self, frames: Iterable[AnalysedFrame], hold: int) -> None:
        self._frames = iter(frames)
        self._hold = hold
        self._last_index = -1
        self._pending: AnalysedFrame | None = self._take()
        self._current: AnalysedFrame | None = None

    def at(self, i: int) -> Detections:
        while self._pending is not None and self._pending.frame <= i:
            self._current, self._pending = self._pending, self._take()
        if self._current is None:
            return _NOTHING
        if i - self._current.frame >= self._hold:
            self._current = None  # held long enough; let it go
            return _NOTHING
        return self._current.detections

    def _take(self) -> AnalysedFrame | None:
        item = next(self._frames, None)
        if item is None:
            return None
        if not isinstance(item.frame, int) or item.frame <= self._last_index:
            raise RenderError(
                f"analysed frames must come in increasing frame order: {item.frame!r} "
                f"after {self._last_index}"
            )
        self._last_index = item.frame
        return item


_NOTHING = Detections.empty()


class _Audio:
    """The output's audio: the source's first audio stream, copied or transcoded,
    moved by the same amount as the video so the two stay in sync."""

    def __init__(
        self,
        out: av.container.OutputContainer,
        source: av.AudioStream,
        stream: av.AudioStream,
        mode: Literal["copied", "transcoded"],
        shift: Fraction,
    ) -> None:
        self.out, self.source, self.stream, self.mode = out, source, stream, mode
        self.shift = round(shift / Fraction(source.time_base or Fraction(1, 1)))

    @classmethod
    def create(
        cls, out: av.container.OutputContainer, source: av.AudioStream, shift: Fraction
    ) -> _Audio | None:
        """Add the audio stream to ``out``; None when the source's audio can be
        neither copied nor decoded. ``shift`` is the video's first timestamp, in seconds."""
        ctx = source.codec_context
        codec = ctx.codec.canonical_name if ctx is not None else ""
        if codec in COPY_AUDIO_CODECS:
            try:
                copy = out.add_stream_from_template(source)
            except ValueError:
                pass  # the MP4 muxer refuses it after all: transcode
            else:
                return cls(out, source, copy, "copied", shift)
        if ctx is None or not ctx.sample_rate:
            return None
        rate = ctx.sample_rate if ctx.sample_rate in _AAC_RATES else 48000
        stream = cast(av.AudioStream, out.add_stream("aac", rate=rate))
        stream.codec_context.layout = "mono" if ctx.channels == 1 else "stereo"
        stream.codec_context.bit_rate = AUDIO_BIT_RATE
        return cls(out, source, stream, "transcoded", shift)

    def add(self, packet: av.Packet) -> None:
        if self.mode == "copied":
            if packet.pts is not None:
                packet.pts -= self.shift
            if packet.dts is not None:
                packet.dts -= self.shift
            packet.stream = self.stream
            self.out.mux(packet)
        else:
            self._transcode(packet)

    def flush(self) -> None:
        if self.mode == "transcoded":
            self._transcode(None)
            self.out.mux(self.stream.encode(None))

    def _transcode(self, packet: av.Packet | None) -> None:
        """Decode and encode one packet's audio; a packet that does not decode is
        left out (a gap in the sound is better than no video)."""
        try:
            frames = self.source.codec_context.decode(packet)
        except av.FFmpegError:
            return
        for frame in frames:
            if frame.pts is not None:
                frame.pts -= self.shift
            try:
                self.out.mux(self.stream.encode(frame))
            except ValueError:
                continue  # the source's audio format changed mid-stream
