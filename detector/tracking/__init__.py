"""Track ids for a job's detected objects across its analysed frames (ByteTrack).

A pure library: nothing here knows about Flask, Celery or the database.
Importing it is cheap; supervision (the tracker) loads on the first `Tracker`.
"""

from detector.tracking.bytetrack import (
    DEFAULT_BUFFER_SECONDS,
    DEFAULT_FRAME_RATE,
    TrackedFrames,
    Tracker,
    TrackSummary,
    frame_rate_of,
    track_frames,
)

__all__ = [
    "DEFAULT_BUFFER_SECONDS",
    "DEFAULT_FRAME_RATE",
    "TrackSummary",
    "TrackedFrames",
    "Tracker",
    "frame_rate_of",
    "track_frames",
]
