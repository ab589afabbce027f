"""Annotated videos: a job's detections drawn into a copy of its video (PyAV, OpenCV).

Nothing here knows about Flask, Celery or the database.
"""

from detector.render.draw import (
    PALETTE,
    Overlay,
    Style,
    draw_objects,
    draw_objects_yuv420p,
    draw_overlay,
    label_text,
    object_color,
    to_yuv,
)
from detector.render.video import (
    COPY_AUDIO_CODECS,
    CRF,
    LIBX264,
    NVENC,
    PRESET,
    PROGRESS_EVERY,
    RenderError,
    RenderStats,
    render_video,
)

__all__ = [
    "COPY_AUDIO_CODECS",
    "CRF",
    "LIBX264",
    "NVENC",
    "PALETTE",
    "PRESET",
    "PROGRESS_EVERY",
    "Overlay",
    "RenderError",
    "RenderStats",
    "Style",
    "draw_objects",
    "draw_objects_yuv420p",
    "draw_overlay",
    "label_text",
    "object_color",
    "render_video",
    "to_yuv",
]
