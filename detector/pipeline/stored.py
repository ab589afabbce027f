"""A job's stored frames, read back in frame order a batch at a time (exports, renders)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select

from detector.db import db
from detector.detection import AnalysedFrame, Detections
from detector.models import FrameDetections

# Frames read from the database per query.
BATCH_FRAMES = 500


def stored_frames(job_id: str, batch: int = BATCH_FRAMES) -> Iterator[AnalysedFrame]:
    """A job's stored frames in order, ``batch`` at a time, holding no transaction
    open between batches."""
    last = -1
    while True:
        rows = db.session.execute(
            select(FrameDetections.index, FrameDetections.timestamp, FrameDetections.objects)
            .where(FrameDetections.job_id == job_id, FrameDetections.index > last)
            .order_by(FrameDetections.index)
            .limit(batch)
        ).all()
        db.session.rollback()
        if not rows:
            return
        for index, timestamp, objects in rows:
            yield AnalysedFrame(index, timestamp, Detections.from_objects(objects))
        last = rows[-1][0]
