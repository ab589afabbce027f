"""Synthetic test videos: moving shapes, any size, codec, length or frame timing.

Used by the tests and the benchmark, so no video file is ever committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def frame_image(i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i``: a few coloured shapes that move from frame to frame (BGR)."""
    img = np.full((height, width, 3), (40, 60, 80), dtype=np.uint8)
    s = max(8, min(width, height) // 6)
    x = (i * 7) % max(1, width - s)
    y = (i * 3) % max(1, height - s)
    cv2.rectangle(img, (x, height // 4), (x + s, height // 4 + s), (0, 0, 255), -1)
    cv2.circle(img, (width - 1 - x, y + s // 2), s // 2, (0, 255, 0), -1)
    cv2.rectangle(img, (width // 3, height - 1 - y - s), (width // 3 + s, height - 1 - y), (255, 200, 0), 3)
    cv2.putText(
        img, str(i), (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, height / 480), (255, 255, 255), 1
    )
    return img


def make_video(
    path: str | Path,
    frames: int = 50,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    codec: str = "libx264",
    gop: int | None = None,
    pts: Sequence[int] | None = None,
    rotation: int = 0,
    container_format: str | None = None,
    bframes: int | None = None,
    open_gop: bool = False,
) -> Path:
    """Write a video of ``frames`` moving-shape frames and return its path.

    Args:
        gop: keyframe interval (libx264/mpeg4); None for the encoder's default.
        pts: explicit presentation timestamps in 1/``fps``/100 s units, for
            variable-frame-rate videos; None for a constant rate.
        rotation: display rotation (degrees counter-clockwise) written into the
            container's display matrix; `probe` reads it back as ``rotation``.
        bframes: B-frames between references (libx264); None for the encoder's
            default (3, so libx264 videos have B-frames unless told 0).
        open_gop: libx264 open GOPs: B-frames before a keyframe (in display
            order) refer to the GOP before it.
    """
    path = Path(path)
    with av.open(str(path), mode="w", format=container_format) as out:
        stream: av.VideoStream = out.add_stream(codec, rate=fps)  # type: ignore[assignment]
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        options: dict[str, object] = {}
        if gop is not None and codec in ("libx264", "mpeg4"):
            options["g"] = str(gop)
            if codec == "libx264":
                options["keyint_min"] = str(gop)
                options["sc_threshold"] = "0"
        if bframes is not None and codec == "libx264":
            options["bf"] = str(bframes)
        if open_gop and codec == "libx264":
            options["x264-params"] = "open-gop=1"
        stream.options = {k: str(v) for k, v in options.items()}
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, fps * 100)
        if rotation:
            # A display matrix, as phones write it; FFmpeg ignores a "rotate" tag on output.
            stream.set_display_rotation(rotation)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, width, height), format="bgr24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = Fraction(1, fps * 100)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def trim_stream_copy(
    source: str | Path, path: str | Path, start: Fraction, end: Fraction | None = None
) -> Path:
    """Cut ``source`` from ``start`` seconds without re-encoding, as
    ``ffmpeg -ss START -i SOURCE -c copy PATH`` does, and return ``path``.

    Packets are copied from the first one (the keyframe before ``start``) with
    their timestamps moved back by ``start``, so the frames before the cut have
    negative timestamps. An MP4 muxer then writes an edit list that hides them:
    demuxers mark their packets "discard", decoders decode them as references but
    never present them. Packets that end after ``end`` are not copied.
    """
    path = Path(path)
    with av.open(str(source)) as src, av.open(str(path), mode="w") as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        time_base = video.time_base or Fraction(1, 1)
        shift = round(start / time_base)
        for packet in src.demux(video):
            if packet.dts is None or packet.pts is None:
                continue  # the demuxer's end-of-stream marker
            if end is not None and packet.pts * time_base >= end:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = stream
            out.mux(packet)
    return path
