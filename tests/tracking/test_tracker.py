"""Track ids over synthetic detections: crossing, leaving and coming back, sampled
jobs, re-tracking, summaries, the frame rate and objects ByteTrack would drop."""

from __future__ import annotations

import copy
import math

import pytest

from detector.detection import AnalysedFrame, Detections
from detector.tracking import (
    DEFAULT_FRAME_RATE,
    TrackedFrames,
    Tracker,
    TrackSummary,
    frame_rate_of,
    track_frames,
)


def obj(x, y=100.0, *, w=100.0, h=200.0, score=0.9, class_id=0, label="person", **extra):
    return {"label": label, "class_id": class_id, "score": score, "box": [x, y, x + w, y + h], **extra}


def found(objects):
    """Objects in their JSON form, as `Detections`."""
    return Detections.from_objects(objects)


def analysed(frames):
    """``(frame, timestamp, objects)`` tuples as `AnalysedFrame` s."""
    return [AnalysedFrame(frame, timestamp, found(objects)) for frame, timestamp, objects in frames]


def ids(frames, position=0):
    """The track id of the object at ``position`` in each frame that has one."""
    return [objects.track_ids()[position] for _, _, objects in frames if len(objects) > position]


def run(frames, frame_rate, **kwargs):
    tracked = track_frames(analysed(frames), frame_rate, **kwargs)
    return list(tracked), tracked.summaries()


# (a) crossing


@pytest.mark.parametrize("speed", [5.0, 20.0])
def test_two_objects_crossing_keep_their_ids(speed):
    frames = [(k, k / 30, [obj(100 + speed * k), obj(100 + speed * (59 - k), y=110.0)]) for k in range(60)]
    out, _ = run(frames, 30.0)
    rightward, leftward = ids(out, 0), ids(out, 1)
    assert rightward[0] != leftward[0]
    assert set(rightward) == {rightward[0]}
    assert set(leftward) == {leftward[0]}


# (b) leaving and coming back


def absent_for(gap, *, fps=30.0, stored=True):
    """A still object seen for 10 frames, then absent for ``gap`` frames (stored as
    empty frames or left out of the input), then seen again for 10."""
    frames = []
    for k in range(20 + gap):
        seen = k < 10 or k >= 10 + gap
        if seen or stored:
            frames.append((k, k / fps, [obj(300.0)] if seen else []))
    return frames


@pytest.mark.parametrize("stored", [True, False])
def test_an_object_back_within_the_buffer_keeps_its_id(stored):
    out, summaries = run(absent_for(20, stored=stored), 30.0, buffer_seconds=1.0)
    assert set(ids(out)) == {1}
    assert len(summaries) == 1 and summaries[0].frames == 20


@pytest.mark.parametrize("stored", [True, False])
def test_an_object_back_after_the_buffer_gets_a_new_id(stored):
    out, summaries = run(absent_for(40, stored=stored), 30.0, buffer_seconds=1.0)
    assert ids(out) == [1] * 10 + [2] * 10
    assert [(s.first_frame, s.last_frame) for s in summaries] == [(0, 9), (50, 59)]


def test_the_buffer_is_in_seconds():
    assert Tracker(30.0, buffer_seconds=1.0).buffer_frames == 30
    assert Tracker(2.0, buffer_seconds=2.0).buffer_frames == 4
    assert Tracker(1.0, buffer_seconds=0.1).buffer_frames == 1  # at least one frame


def test_a_new_object_has_the_same_id_from_its_first_frame():
    """ByteTrack reports a track that starts after the first frame only from its
    second frame on; its first object must still get the track's id."""
    frames = [
        (k, k / 30, [obj(900.0, y=500.0)] + ([obj(100.0 + 10 * k)] if k >= 5 else [])) for k in range(20)
    ]
    out, summaries = run(frames, 30.0)
    assert set(ids(out, 0)) == {1}
    assert ids(out, 1) == [2] * 15
    assert summaries[1].first_frame == 5


def test_a_one_frame_object_gets_a_track_of_its_own():
    frames = [(k, k / 30, [obj(100.0)] + ([obj(600.0)] if k == 5 else [])) for k in range(10)]
    out, summaries = run(frames, 30.0)
    assert set(ids(out, 0)) == {1}
    assert out[5].detections.track_ids()[1] == 2
    assert summaries[1].frames == 1


# (c) sampled jobs


def sampled(every=15, fps=30.0, count=30, step=30.0, skip=()):
    """Every ``every``-th frame of a ``fps`` video, a box moving ``step`` pixels per
    analysed frame; analysed frames at positions in ``skip`` see nothing."""
    return [(n * every, n * every / fps, [] if n in skip else [obj(50.0 + step * n)]) for n in range(count)]


def test_a_sampled_job_keeps_its_ids():
    frames = sampled()
    rate = frame_rate_of([t for _, t, _ in frames])
    assert rate == pytest.approx(2.0)
    out, summaries = run(frames, rate)
    assert set(ids(out)) == {1}
    assert summaries[0].frames == 30


def test_a_sampled_job_keeps_an_id_over_a_one_second_gap():
    out, _ = run(sampled(skip={10, 11}), 2.0)
    assert set(ids(out)) == {1}
    out, _ = run([f for f in sampled() if f[0] not in (150, 165)], 2.0)  # the gap left out
    assert set(ids(out)) == {1}


@pytest.mark.parametrize("stored", [True, False])
def test_a_sampled_job_forgets_a_track_after_the_buffer_in_seconds(stored):
    """Six analysed frames are 3 s at 2 fps, past the 2 s buffer (30 frames of
    the video would be well within it)."""
    frames = sampled(skip=set(range(10, 16)), step=0.0)
    if not stored:
        frames = [f for f in frames if f[2]]
    out, _ = run(frames, 2.0, buffer_seconds=2.0)
    assert ids(out) == [1] * 10 + [2] * 14
    out, _ = run(frames, 2.0, buffer_seconds=4.0)
    assert set(ids(out)) == {1}


def test_a_new_object_in_a_sampled_job_keeps_its_id():
    frames = [
        (n * 15, n / 2, [obj(900.0, y=500.0)] + ([obj(50.0 + 30 * n)] if n >= 4 else [])) for n in range(20)
    ]
    out, _ = run(frames, frame_rate_of([t for _, t, _ in frames]))
    assert set(ids(out, 0)) == {1}
    assert ids(out, 1) == [2] * 16


def test_the_frame_after_a_long_gap_is_tracked():
    frames = [(0, 0.0, [obj(100.0)]), (1, 1 / 30, [obj(100.0)]), (90_000, 3000.0, [obj(100.0)])]
    out, summaries = run(frames, 30.0)
    assert ids(out) == [1, 1, 2]
    assert len(summaries) == 2


# (d) re-tracking


def test_retracking_gives_the_same_ids_whatever_ids_the_input_had():
    frames = [
        (k, k / 30, [obj(100 + 8 * k), obj(700 - 8 * k, y=120.0), obj(400.0, class_id=2, label="car")])
        for k in range(40)
    ]
    first, first_summaries = run(frames, 30.0)
    stale = [(f, t, [{**o, "track_id": 77 + i} for i, o in enumerate(objects)]) for f, t, objects in frames]
    before = copy.deepcopy(stale)
    again, again_summaries = run(stale, 30.0)
    assert again == first
    assert again_summaries == first_summaries
    assert stale == before  # the input is not changed
    assert run(frames, 30.0) == (first, first_summaries)


def test_objects_come_back_as_new_detections_in_the_same_order():
    objects = [obj(100.0), obj(500.0, class_id=3, label="dog"), obj(800.0)]
    given = found(objects)
    tracked = Tracker(30.0).update(0, 0.0, given).to_objects()
    assert [o["box"] for o in tracked] == [o["box"] for o in objects]
    assert [list(t) for t in tracked] == [[*o, "track_id"] for o in objects]
    assert given.track_id is None  # the input is not changed


# (e) summaries


def test_summaries():
    frames = []
    for k in range(12):
        objects = [obj(100.0 + 5 * k, score=0.6 + 0.02 * k)]
        if 3 <= k <= 7:
            objects.append(obj(700.0, y=400.0, score=0.8, class_id=2, label="car"))
        frames.append((10 + 5 * k, 1.0 + k / 6, objects))
    tracked = track_frames(analysed(frames), 6.0)
    assert isinstance(tracked, TrackedFrames)
    list(tracked)
    person, car = tracked.summaries()
    assert isinstance(person, TrackSummary)
    assert person.as_dict() == {
        "track_id": 1,
        "label": "person",
        "class_id": 0,
        "first_frame": 10,
        "last_frame": 65,
        "first_timestamp": 1.0,
        "last_timestamp": pytest.approx(1.0 + 11 / 6),
        "frames": 12,
        "mean_score": pytest.approx(0.6 + 0.02 * 5.5),
        # The best object is the last one, the score rising frame by frame.
        "best_frame": 65,
        "best_score": pytest.approx(0.82),
        "best_box": [155.0, 100.0, 255.0, 300.0],
    }
    assert (car.track_id, car.label, car.class_id, car.frames) == (2, "car", 2, 5)
    assert (car.first_frame, car.last_frame) == (25, 45)
    assert car.first_timestamp == pytest.approx(1.5) and car.last_timestamp == pytest.approx(1 + 7 / 6)
    assert car.mean_score == pytest.approx(0.8)
    assert car.as_dict() == {
        "track_id": 2,
        "label": "car",
        "class_id": 2,
        "first_frame": 25,
        "last_frame": 45,
        "first_timestamp": car.first_timestamp,
        "last_timestamp": car.last_timestamp,
        "frames": 5,
        "mean_score": car.mean_score,
        # Equal scores throughout: the first object is the best.
        "best_frame": 25,
        "best_score": pytest.approx(0.8),
        "best_box": [700.0, 400.0, 800.0, 600.0],
    }


def test_a_track_never_changes_class():
    """A car and a person on the same spot are two tracks, each kept."""
    frames = [
        (k, k / 30, [obj(100.0 + 4 * k), obj(102.0 + 4 * k, class_id=2, label="car")]) for k in range(20)
    ]
    out, summaries = run(frames, 30.0)
    assert set(ids(out, 0)) == {1} and set(ids(out, 1)) == {2}
    assert [(s.label, s.class_id) for s in summaries] == [("person", 0), ("car", 2)]


def test_track_frames_is_lazy():
    pulled = []

    def source():
        for k in range(1000):
            pulled.append(k)
            yield AnalysedFrame(k, k / 30, found([obj(100.0)]))

    tracked = track_frames(source(), 30.0)
    assert pulled == []
    frame, timestamp, objects = next(tracked)
    assert (frame, timestamp, pulled) == (0, 0.0, [0])
    assert objects.track_ids()[0] == 1
    assert tracked.summaries()[0].frames == 1


# (f) frame rate


@pytest.mark.parametrize(
    ("timestamps", "rate"),
    [
        ([0.0, 0.5, 1.0, 1.5, 2.0], 2.0),
        ([k / 30 for k in range(100)], 30.0),
        ([10.0 + k / 6 for k in range(61)], 6.0),
        ([0.0, 0.1, 0.2, 0.6, 0.7, 0.8], 10.0),  # the median step, not the mean
        ([0.0, 0.04, 0.08, 0.2, 0.24, 0.36, 0.4], 25.0),
        ([0.0, 0.5, 0.5, 1.0, 1.5], 2.0),  # a repeated timestamp is not a step
    ],
)
def test_frame_rate_of(timestamps, rate):
    assert frame_rate_of(timestamps) == pytest.approx(rate)


@pytest.mark.parametrize("timestamps", [[], [4.0], [2.0, 2.0, 2.0], [3.0, 2.0, 1.0], [0.0, math.nan]])
def test_frame_rate_of_degenerate_input(timestamps):
    assert frame_rate_of(timestamps) == DEFAULT_FRAME_RATE


# (g) every object gets an id


def test_low_score_objects_continue_their_track():
    """ByteTrack's second pass: a box below the activation threshold keeps the
    track it continues."""
    frames = [(k, k / 30, [obj(100.0 + 5 * k, score=0.9 if k < 10 else 0.15)]) for k in range(20)]
    out, summaries = run(frames, 30.0)
    assert set(ids(out)) == {1}
    assert summaries[0].frames == 20


@pytest.mark.parametrize(
    "odd",
    [
        obj(500.0, score=0.05),  # below ByteTrack's 0.1 floor
        obj(500.0, score=0.2),  # too low to start a track
        obj(500.0, w=0.0),  # no width
        obj(500.0, score=math.nan),
        {
            "label": "person",
            "class_id": 0,
            "score": 0.9,
            "box": [500.0, 300.0, 400.0, 100.0],
        },  # corners swapped
    ],
)
def test_every_object_gets_an_int_track_id(odd):
    tracker = Tracker(30.0)
    seen = []
    for k in range(5):
        given = found([obj(100.0), odd, obj(100.0, class_id=5, label="cup")])
        tracked = tracker.update(k, k / 30, given).to_objects()
        assert all(type(o["track_id"]) is int for o in tracked)
        assert (tracked[0]["track_id"], tracked[2]["track_id"]) == (1, 3)
        seen.append(tracked[1]["track_id"])
    assert seen == [2, 4, 5, 6, 7]  # a track of one frame each time
    assert [s.frames for s in tracker.summaries()] == [5, 1, 5, 1, 1, 1, 1]


def test_an_empty_frame_and_an_empty_job():
    assert Tracker(30.0).update(0, 0.0, Detections.empty()).to_objects() == []
    out, summaries = run([], 30.0)
    assert out == [] and summaries == []


def test_bad_input_is_refused():
    tracker = Tracker(30.0)
    tracker.update(5, 0.2, found([obj(1.0)]))
    with pytest.raises(ValueError, match="ascending"):
        tracker.update(5, 0.3, Detections.empty())
    with pytest.raises(ValueError, match="finite"):
        tracker.update(6, math.inf, Detections.empty())
    for rate in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="frame_rate"):
            Tracker(rate)
    with pytest.raises(ValueError, match="buffer_seconds"):
        Tracker(30.0, buffer_seconds=-1.0)


def _many_short_tracks(count=40, life=5, gap=40):
    """Objects that each live ``life`` frames, one starting every ``life + gap`` frames,
    plus a box no track takes now and then (a low score ByteTrack ignores)."""
    frames = []
    for k in range(count * (life + gap)):
        objects = []
        if k % (life + gap) < life:
            objects.append(obj(100.0 + 3 * (k % (life + gap))))
        if k % 7 == 0:
            objects.append(obj(900.0, y=500.0, score=0.05))
        frames.append((k, k / 30, objects))
    return frames


def test_tracks_handed_over_as_they_end_are_those_of_a_whole_run():
    frames = _many_short_tracks()
    _, whole = run(frames, 30.0, buffer_seconds=0.5)
    tracker = Tracker(30.0, buffer_seconds=0.5)
    handed, most_held = [], 0
    for frame in analysed(frames):
        tracker.update(frame.frame, frame.timestamp, frame.detections)
        handed += tracker.pop_finished()
        most_held = max(most_held, len(tracker.summaries()))
    handed += tracker.summaries()
    assert sorted(handed, key=lambda s: s.track_id) == whole
    assert len(whole) > 40  # the tracks of the objects and of the ignored boxes
    assert most_held <= 2  # only what ByteTrack still follows, never the tracks that ended


def test_a_track_lost_within_the_buffer_is_not_handed_over():
    tracker = Tracker(30.0, buffer_seconds=1.0)
    for frame in analysed(absent_for(20)[:25]):  # seen 10 frames, then absent 15
        tracker.update(frame.frame, frame.timestamp, frame.detections)
        assert tracker.pop_finished() == []
    assert [s.track_id for s in tracker.summaries()] == [1]
