"""Split a video's frames into chunks that detector workers decode on their own."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from detector.video.probe import FrameIndex


@dataclass(frozen=True)
class ChunkPlan:
    """Frames ``start_frame`` (inclusive) to ``end_frame`` (exclusive) of a video.

    ``seek_pts`` is the keyframe at or before the first frame: decoding starts
    there and runs forward. ``frame_pts`` are the chunk's frames' timestamps in
    the stream's time base, so a worker can tell exactly which decoded frame is
    which; ``timestamps`` are the same in seconds from the video's first frame,
    as results report them.
    """

    index: int
    start_frame: int
    end_frame: int
    seek_pts: int
    frame_pts: list[int]
    timestamps: list[float]

    @property
    def frame_count(self) -> int:
        return self.end_frame - self.start_frame


def _boundaries(total: int, keyframes: list[int], chunk_frames: int) -> list[int]:
    """Chunk start frames, ``chunk_frames`` apart, each moved to a keyframe within
    half a chunk where there is one, so that a chunk rarely decodes frames that it
    does not deliver."""
    starts = [0]
    slack = chunk_frames // 2
    while (target := starts[-1] + chunk_frames) < total:
        pos = bisect.bisect_left(keyframes, target)
        near = [k for k in keyframes[max(pos - 1, 0) : pos + 1] if abs(k - target) <= slack]
        starts.append(min(near, key=lambda k: abs(k - target)) if near else target)
    return starts


def plan_chunks(index: FrameIndex, chunk_frames: int) -> list[ChunkPlan]:
    """Cover every frame of ``index`` exactly once with chunks of about ``chunk_frames``."""
    if chunk_frames < 1:
        raise ValueError("chunk_frames must be at least 1")
    total = len(index)
    starts = _boundaries(total, index.keyframes, chunk_frames)
    plans = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else total
        key = index.keyframes[bisect.bisect_right(index.keyframes, start) - 1]
        plans.append(
            ChunkPlan(
                index=i,
                start_frame=start,
                end_frame=end,
                seek_pts=index.pts[key],
                frame_pts=index.pts[start:end],
                timestamps=[index.timestamp(pts) for pts in index.pts[start:end]],
            )
        )
    return plans
