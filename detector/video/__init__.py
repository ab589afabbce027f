"""Video probing, frame indexing, chunk planning and frame-range decoding (PyAV).

Nothing here knows about Flask, Celery or the database.
"""

from detector.video.chunks import ChunkPlan, iter_chunk_plans, plan_chunks
from detector.video.decode import DecodeStats, decode_frames
from detector.video.probe import (
    ByteSource,
    FrameIndex,
    NotAVideoError,
    VideoError,
    VideoInfo,
    VideoSource,
    index_frames,
    probe,
)

__all__ = [
    "ByteSource",
    "ChunkPlan",
    "DecodeStats",
    "FrameIndex",
    "NotAVideoError",
    "VideoError",
    "VideoInfo",
    "VideoSource",
    "decode_frames",
    "index_frames",
    "iter_chunk_plans",
    "plan_chunks",
    "probe",
]
