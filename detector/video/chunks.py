"""Split a video's selected frames into chunks that detector workers decode on their own."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from detector.video.probe import FrameIndex


@dataclass(frozen=True)
class ChunkPlan:
    """The frames ``frames`` of a video (0-based indices in presentation order,
    ascending), all within ``start_frame`` (inclusive) to ``end_frame`` (exclusive).

    A job that analyses every frame has every index of the range; a sampled job
    only some. ``seek_pts`` is the keyframe at or before the first frame:
    decoding starts there and runs forward, dropping the frames between the
    selected ones. ``frame_pts`` are the selected frames' timestamps in the
    stream's time base, so a worker can tell exactly which decoded frame is
    which; ``timestamps`` are the same in seconds from the video's first frame,
    as results report them.
    """

    index: int
    start_frame: int
    end_frame: int
    seek_pts: int
    frame_pts: list[int]
    timestamps: list[float]
    frames: list[int]

    @property
    def frame_count(self) -> int:
        """The frames this chunk analyses."""
        return len(self.frames)


def _redecoded(selected: Sequence[int], keyframes: list[int], position: int) -> int:
    """Frames decoded twice when a chunk starts at ``selected[position]``: those the
    previous chunk decoded between this chunk's keyframe and its own last frame."""
    key = keyframes[bisect.bisect_right(keyframes, selected[position]) - 1]
    return max(0, selected[position - 1] + 1 - key)


def _boundaries(selected: Sequence[int], keyframes: list[int], chunk_frames: int) -> list[int]:
    """Positions in ``selected`` where chunks start, ``chunk_frames`` apart, each
    moved within half a chunk to where no frame is decoded twice (the first
    selected frame after a keyframe) where there is such a place."""
    starts = [0]
    slack = chunk_frames // 2
    total = len(selected)
    while (target := starts[-1] + chunk_frames) < total:
        lowest = max(starts[-1] + 1, target - slack)
        candidates = [
            p
            for p in range(lowest, min(total - 1, target + slack) + 1)
            if _redecoded(selected, keyframes, p) == 0
        ]
        starts.append(min(candidates, key=lambda p: (abs(p - target), p)) if candidates else target)
    return starts


def plan_chunks(
    index: FrameIndex, chunk_frames: int, selected: Sequence[int] | None = None
) -> list[ChunkPlan]:
    """Cover each of the ``selected`` frames of ``index`` (default: all) exactly once,
    with chunks of about ``chunk_frames`` selected frames."""
    return list(iter_chunk_plans(index, chunk_frames, selected))


def iter_chunk_plans(
    index: FrameIndex, chunk_frames: int, selected: Sequence[int] | None = None
) -> Iterator[ChunkPlan]:
    """The chunks of `plan_chunks`, one at a time: where they start is decided first,
    each one's frame lists only as it is taken. ValueError (at once) for a
    ``chunk_frames`` below 1."""
    if chunk_frames < 1:
        raise ValueError("chunk_frames must be at least 1")
    chosen = range(len(index)) if selected is None else selected
    if not chosen:
        return iter(())
    starts = _boundaries(chosen, index.keyframes, chunk_frames)
    ends = [*starts[1:], len(chosen)]
    spans = enumerate(zip(starts, ends, strict=True))
    return (_plan(index, i, list(chosen[start:end])) for i, (start, end) in spans)


def _plan(index: FrameIndex, position: int, frames: list[int]) -> ChunkPlan:
    """The chunk ``position`` of the job, of these ``frames``."""
    key = index.keyframes[bisect.bisect_right(index.keyframes, frames[0]) - 1]
    pts = [index.pts[f] for f in frames]
    return ChunkPlan(
        index=position,
        start_frame=frames[0],
        end_frame=frames[-1] + 1,
        seek_pts=index.pts[key],
        frame_pts=pts,
        timestamps=[index.timestamp(p) for p in pts],
        frames=frames,
    )
