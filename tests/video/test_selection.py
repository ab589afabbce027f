"""Which frames a job analyses (`FrameSelection`): a span, a stride or a sampling rate,
chosen on the frames' real timestamps, so a variable-frame-rate video is sampled
evenly in time."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import pytest

from detector.video.selection import FrameSelection


def _reference(exact: list[Fraction], sample_fps: Fraction) -> list[int]:
    """The first frame at or after each point of a grid ``1 / sample_fps`` apart from the
    first frame, in exact arithmetic: what `FrameSelection` should pick."""
    interval = 1 / sample_fps
    chosen: set[int] = set()
    k = 0
    while (point := exact[0] + k * interval) <= exact[-1]:
        chosen.add(next(i for i, t in enumerate(exact) if t >= point))
        k += 1
    return sorted(chosen)


def _vfr(seed: int, n: int, steps_ms: tuple[int, ...]) -> list[Fraction]:
    rng = random.Random(seed)
    exact = [Fraction(0)]
    for _ in range(n - 1):
        exact.append(exact[-1] + Fraction(rng.choice(steps_ms), 1000))
    return exact


def test_no_options_select_every_frame():
    timestamps = [i / 25 for i in range(40)]
    assert FrameSelection().select(timestamps) == list(range(40))
    assert FrameSelection(frame_stride=1).select(timestamps) == list(range(40))
    assert FrameSelection().everything and FrameSelection(frame_stride=1).everything
    assert not FrameSelection(frame_stride=2).everything
    assert not FrameSelection(sample_fps=25).everything  # "everything" means: of any video
    assert not FrameSelection(start=0.5).everything
    assert FrameSelection().select([]) == []


@pytest.mark.parametrize(
    ("fps", "sample_fps", "step"),
    [(30, 10, 3), (30, 7.5, 4), (30, 1, 30), (25, 5, 5), (24, 12, 2), (30, 30, 1), (30, 60, 1)],
)
def test_sample_fps_on_a_constant_rate_takes_every_kth_frame(fps, sample_fps, step):
    # As `FrameIndex.timestamp` gives them (rounded to microseconds), and as floats
    # add up (i * (1/30)): neither may shift a pick to the next frame.
    for timestamps in (
        [round(float(Fraction(i, fps)), 6) for i in range(3 * fps)],
        [i * (1 / fps) for i in range(3 * fps)],
    ):
        assert FrameSelection(sample_fps=sample_fps).select(timestamps) == list(range(0, 3 * fps, step))


def test_sample_fps_on_ntsc_timestamps():
    """29.97 fps in a 1/90000 time base, sampled at a third of its rate: the grid points
    fall exactly on every third frame, where float rounding lands either side."""
    time_base = Fraction(1, 90000)
    timestamps = [float(i * 3003 * time_base) for i in range(300)]
    rate = float(Fraction(30000, 1001) / 3)
    assert FrameSelection(sample_fps=rate).select(timestamps) == list(range(0, 300, 3))


@pytest.mark.parametrize("jitter", [-1e-9, 1e-9, -3e-7])
def test_float_jitter_counts_as_on_the_grid_point(jitter):
    """3/30 s may come out as 0.09999999999999999: a frame a hair before a grid point
    (or a span's start) counts as on it, not as before it."""
    exact = [Fraction(i, 30) for i in range(90)]
    rng = random.Random(5)
    timestamps = [float(t) + (jitter if rng.random() < 0.5 else 0.0) for t in exact]
    timestamps[0] = 0.0
    assert FrameSelection(sample_fps=10).select(timestamps) == list(range(0, 90, 3))
    assert FrameSelection(sample_fps=10).select(timestamps) == _reference(exact, Fraction(10))
    assert FrameSelection(start=0.5, end=1.5).select(timestamps) == list(range(15, 45))
    # A frame exactly at (or a hair before) ``end`` is out: end is exclusive.
    assert FrameSelection(start=0.1, end=0.2).select(timestamps) == [3, 4, 5]


@pytest.mark.parametrize(
    "sample_fps", [Fraction(1), Fraction(2), Fraction(5), Fraction(25, 2), Fraction(3, 4)]
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sample_fps_on_a_variable_rate_picks_the_first_frame_at_or_after_each_grid_point(sample_fps, seed):
    exact = _vfr(seed, 200, (10, 33, 40, 100, 250, 700))
    timestamps = [round(float(t), 6) for t in exact]
    chosen = FrameSelection(sample_fps=float(sample_fps)).select(timestamps)
    assert chosen == _reference(exact, sample_fps)
    # At most one frame per grid cell, so at most sample_fps frames in each second.
    cells = [math.floor(exact[i] * sample_fps) for i in chosen]
    assert cells == sorted(set(cells))
    if sample_fps.denominator == 1:
        per_second = Counter(math.floor(exact[i]) for i in chosen)
        assert max(per_second.values()) <= sample_fps
    # Nothing is skipped: between two picks there is no grid point with a frame of its own.
    for a, b, cell in zip(chosen, chosen[1:], cells, strict=False):
        assert all(math.floor(exact[i] * sample_fps) == cell for i in range(a, b))


def test_a_variable_rate_is_sampled_evenly_in_time():
    """1 s at 60 fps, 2 s at 4 fps, 1 s at 30 fps, sampled at 2 frames a second: 2 frames
    in every second wherever the video is dense or sparse, each the first at or after its
    grid point; a stride, by contrast, follows the frame rate."""
    exact = (
        [Fraction(i, 60) for i in range(60)]
        + [1 + Fraction(i, 4) for i in range(8)]
        + [3 + Fraction(i, 30) for i in range(30)]
    )
    timestamps = [float(t) for t in exact]
    chosen = FrameSelection(sample_fps=2).select(timestamps)
    assert [exact[i] for i in chosen] == [Fraction(k, 2) for k in range(8)]
    assert chosen == [0, 30, 60, 62, 64, 66, 68, 83]
    strided = FrameSelection(frame_stride=15).select(timestamps)
    per_second = Counter(math.floor(exact[i]) for i in strided)
    assert per_second[0] == 4 and per_second[1] + per_second[2] == 1  # uneven in time


def test_a_frame_that_covers_several_grid_points_is_taken_once():
    """A 2 s gap in the video: the frame after it stands for every grid point in the
    gap, and sampling carries on on the grid after it."""
    timestamps = [0.0, 0.1, 0.2, 2.45, 2.5, 2.55, 2.6, 2.9, 3.0, 3.05]
    assert FrameSelection(sample_fps=2).select(timestamps) == [0, 3, 4, 8]


def test_frame_stride_counts_from_the_spans_first_frame():
    timestamps = [i / 10 for i in range(30)]
    assert FrameSelection(frame_stride=4).select(timestamps) == list(range(0, 30, 4))
    assert FrameSelection(frame_stride=4, start=0.5).select(timestamps) == list(range(5, 30, 4))
    assert FrameSelection(frame_stride=4, start=0.5, end=1.7).select(timestamps) == [5, 9, 13]
    assert FrameSelection(frame_stride=100).select(timestamps) == [0]
    # On a variable rate a stride is a count of frames, not of seconds.
    vfr = [0.0, 0.01, 0.02, 1.0, 2.0, 2.01, 5.0]
    assert FrameSelection(frame_stride=2).select(vfr) == [0, 2, 4, 6]


def test_start_and_end_span_is_start_inclusive_end_exclusive():
    timestamps = [i / 10 for i in range(30)]  # 0.30000000000000004, 0.6000000000000001...
    assert FrameSelection(start=0.3, end=0.6).select(timestamps) == [3, 4, 5]
    assert FrameSelection(start=0.3).select(timestamps) == list(range(3, 30))
    assert FrameSelection(end=0.6).select(timestamps) == list(range(6))
    assert FrameSelection(start=0.25, end=0.65).select(timestamps) == [3, 4, 5, 6]
    assert FrameSelection(start=5.0).select(timestamps) == []
    assert FrameSelection(start=5.0, sample_fps=2).select(timestamps) == []
    assert FrameSelection(start=5.0, frame_stride=2).select(timestamps) == []


def test_sample_fps_within_a_span_starts_its_grid_at_the_spans_first_frame():
    exact = _vfr(9, 150, (20, 50, 120))
    timestamps = [float(t) for t in exact]
    selection = FrameSelection(sample_fps=4, start=1.03, end=3.5)
    chosen = selection.select(timestamps)
    span = [i for i, t in enumerate(exact) if Fraction(103, 100) <= t < Fraction(7, 2)]
    assert chosen[0] == span[0]
    assert chosen == [span[i] for i in _reference([exact[j] for j in span], Fraction(4))]
    assert all(1.03 <= timestamps[i] < 3.5 for i in chosen)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sample_fps": 2, "frame_stride": 3}, "cannot both be set"),
        ({"sample_fps": 0}, "sample_fps must be greater than 0"),
        ({"sample_fps": -1.5}, "sample_fps must be greater than 0"),
        ({"sample_fps": math.nan}, "sample_fps must be greater than 0"),
        ({"frame_stride": 0}, "frame_stride must be at least 1"),
        ({"frame_stride": -2}, "frame_stride must be at least 1"),
        ({"start": -0.5}, "start must be at least 0"),
        ({"start": math.nan}, "start must be at least 0"),
        ({"end": 0}, "end must be greater than start"),
        ({"start": 2, "end": 2}, "end must be greater than start"),
        ({"start": 3, "end": 1}, "end must be greater than start"),
        ({"end": math.nan}, "end must be greater than start"),
    ],
)
def test_invalid_selections_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        FrameSelection(**options)


def test_valid_edge_selections_are_accepted():
    assert FrameSelection(start=0).select([0.0, 0.5]) == [0, 1]
    assert FrameSelection(end=0.5).select([0.0, 0.5]) == [0]
    assert FrameSelection(sample_fps=0.001).select([0.0, 10.0, 999.0, 1000.0]) == [0, 3]


@pytest.mark.parametrize(
    ("selection", "fps", "hold"),
    [
        (FrameSelection(), 30.0, 1),
        (FrameSelection(), None, 1),
        (FrameSelection(frame_stride=4), 30.0, 4),
        (FrameSelection(frame_stride=4), None, 4),
        (FrameSelection(sample_fps=5), 30.0, 6),
        (FrameSelection(sample_fps=7), 30.0, 4),
        (FrameSelection(sample_fps=2), 29.97, 15),
        (FrameSelection(sample_fps=50), 30.0, 1),
        (FrameSelection(sample_fps=5), None, 1),
        (FrameSelection(sample_fps=5), 0.0, 1),
        (FrameSelection(start=1.0, end=2.0), 30.0, 1),
    ],
)
def test_hold_frames_is_the_video_frames_each_analysed_frame_stands_for(selection, fps, hold):
    assert selection.hold_frames(fps) == hold


@pytest.mark.parametrize(
    "selection",
    [
        FrameSelection(),
        FrameSelection(frame_stride=3, start=0.5),
        FrameSelection(sample_fps=2.5, start=0.3, end=3.1),
        FrameSelection(sample_fps=7),
    ],
)
def test_timestamps_are_read_once_one_at_a_time(selection):
    """A planner hands over a long video's timestamps as a generator, never as a list:
    the selection is the same."""
    timestamps = [float(t) for t in _vfr(3, 200, (20, 40, 40, 100))]
    assert selection.select(t for t in timestamps) == selection.select(timestamps)
