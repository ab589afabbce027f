"""Which of a video's frames a job analyses: a time span, then every k-th frame or
at most N frames a second.

The choice is made on the frames' real timestamps, so a variable-frame-rate video
is sampled evenly in time, and it is the same choice wherever it is made (the
planner, ``detector predict``), because both call `FrameSelection.select`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Timestamps are stream units times a rational time base, as floats: 3/30 s may
# come out as 0.09999999999999999. A frame this close before a sampling point
# counts as on it.
_EPSILON = 1e-6


@dataclass(frozen=True)
class FrameSelection:
    """The frames of a video to analyse.

    ``start`` and ``end`` are seconds from the first frame (``end`` exclusive);
    within that span either every ``frame_stride``-th frame is taken (from the
    span's first frame), or, with ``sample_fps``, the first frame at or after
    each point of a grid ``1 / sample_fps`` seconds apart, which gives at most
    ``sample_fps`` frames a second. With neither, every frame of the span.
    """

    sample_fps: float | None = None
    frame_stride: int | None = None
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if self.sample_fps is not None and self.frame_stride is not None:
            raise ValueError("sample_fps and frame_stride cannot both be set")
        if self.sample_fps is not None and not self.sample_fps > 0:
            raise ValueError("sample_fps must be greater than 0")
        if self.frame_stride is not None and self.frame_stride < 1:
            raise ValueError("frame_stride must be at least 1")
        if self.start is not None and not self.start >= 0:
            raise ValueError("start must be at least 0")
        if self.end is not None and not self.end > (self.start or 0.0):
            raise ValueError("end must be greater than start")

    @property
    def everything(self) -> bool:
        """Whether every frame of any video is selected."""
        return self == FrameSelection() or self == FrameSelection(frame_stride=1)

    def select(self, timestamps: Iterable[float]) -> list[int]:
        """The indices of the selected frames among frames with these ``timestamps``
        (seconds, in presentation order), ascending. The timestamps are read once,
        one at a time: only the selected indices are kept."""
        lo = self.start - _EPSILON if self.start is not None else float("-inf")
        hi = self.end - _EPSILON if self.end is not None else float("inf")
        interval = 1.0 / self.sample_fps if self.sample_fps is not None else None
        chosen: list[int] = []
        in_span = 0  # frames of the span so far
        origin = 0.0  # the span's first timestamp
        due = 0  # the next grid point, counted from origin
        for i, t in enumerate(timestamps):
            if not lo <= t < hi:
                continue
            if self.frame_stride is not None:
                if in_span % self.frame_stride == 0:
                    chosen.append(i)
            elif interval is None:
                chosen.append(i)
            else:
                if not in_span:
                    origin = t
                if t >= origin + due * interval - _EPSILON:
                    chosen.append(i)
                    # Past every grid point this frame covers.
                    due = int((t - origin + _EPSILON) / interval) + 1
            in_span += 1
        return chosen

    def hold_frames(self, fps: float | None) -> int:
        """About how many video frames each analysed frame stands for: 1 for every
        frame, the stride, or the video's frames per sampling interval."""
        if self.frame_stride is not None:
            return self.frame_stride
        if self.sample_fps is not None and fps:
            return max(1, round(fps / self.sample_fps))
        return 1
