"""Line crossings, zone visits, dwell, occupancy and speed on synthetic tracks whose
geometry gives the answers by hand (docs/analytics.md, Geometry)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.analytics.tracks import run, straight, tracked_frames

HORIZONTAL = {"name": "gate", "points": [[0, 150], [400, 150]], "in": "left"}  # left: the top half


def _events(results, kind=None):
    return [e for e in results["events"] if kind is None or e["kind"] == kind]


def test_crossings_both_ways_at_the_interpolated_time():
    frames = list(range(11))
    tracks = {
        1: straight(frames, (100, 100), (0, 10)),  # down through y=150, on it at frame 5
        2: straight(frames, (200, 203), (0, -10)),  # up, between frames 5 (153) and 6 (143)
    }
    results = run({"lines": [HORIZONTAL]}, tracked_frames(tracks, frames)).results
    line = results["lines"][0]
    assert (line["in"], line["out"]) == (1, 1)
    crossed = {e["track_id"]: e for e in _events(results)}
    assert crossed[1]["direction"] == "out" and crossed[1]["frame"] == 5
    assert crossed[1]["timestamp"] == pytest.approx(0.5)
    assert crossed[2]["direction"] == "in" and crossed[2]["frame"] == 6
    assert crossed[2]["timestamp"] == pytest.approx(0.53)


def test_in_is_the_side_named_for_a_diagonal_line():
    frames = list(range(21))
    tracks = {1: straight(frames, (100, 150), (10, 0))}  # rightwards, meets the diagonal at x=200
    line = {"name": "d", "points": [[0, 0], [400, 300]], "in": "left"}
    results = run({"lines": [line]}, tracked_frames(tracks, frames)).results
    assert (results["lines"][0]["in"], results["lines"][0]["out"]) == (1, 0)
    assert results["events"][0]["timestamp"] == pytest.approx(1.0)
    right = run({"lines": [{**line, "in": "right"}]}, tracked_frames(tracks, frames)).results
    assert (right["lines"][0]["in"], right["lines"][0]["out"]) == (0, 1)


def test_a_path_past_the_end_of_the_segment_does_not_cross():
    frames = list(range(11))
    tracks = {1: straight(frames, (300, 100), (0, 10)), 2: straight(frames, (150, 100), (0, 10))}
    short = {"name": "short", "points": [[0, 150], [200, 150]]}
    results = run({"lines": [short]}, tracked_frames(tracks, frames)).results
    assert [e["track_id"] for e in results["events"]] == [2]


def test_jitter_on_the_line_counts_once():
    frames = list(range(31))
    where = {f: (100.0, 120.0 + 2 * f) for f in range(16)}  # reaches the line at frame 15
    where |= {f: (100.0, 147.0 if f % 2 else 153.0) for f in range(16, 26)}  # 3 px either side
    where |= {f: (100.0, 160.0 + 5 * (f - 26)) for f in range(26, 31)}  # then well below it
    back = {f: (200.0, y) for f, (_, y) in where.items() if f < 26}
    back |= {f: (200.0, 140.0 - 5 * (f - 26)) for f in range(26, 31)}  # returns above it
    spec = {"lines": [HORIZONTAL], "hysteresis": 5}
    results = run(spec, tracked_frames({1: where, 2: back}, frames)).results
    assert results["lines"][0]["out"] == 1 and results["lines"][0]["in"] == 0
    (event,) = results["events"]
    assert event["track_id"] == 1
    assert (event["frame"], event["timestamp"]) == (15, pytest.approx(1.5))
    # Without hysteresis every one of the jitter's ten sign changes is a crossing.
    bare = run({**spec, "hysteresis": 0}, tracked_frames({1: where}, frames)).results
    assert bare["lines"][0]["in"] + bare["lines"][0]["out"] > 5


def test_a_sampled_job_counts_the_crossing_between_distant_frames():
    frames = [0, 30, 60, 90]  # 1 frame a second of a 30 fps video
    tracks = {1: {0: (100, 60), 30: (100, 120), 60: (100, 180), 90: (100, 240)}}
    results = run({"lines": [HORIZONTAL], "interval": 1}, tracked_frames(tracks, frames, fps=30)).results
    (event,) = results["events"]
    assert (event["direction"], event["frame"]) == ("out", 60)
    assert event["timestamp"] == pytest.approx(1.5)
    assert results["lines"][0]["intervals"][1]["out"] == {"person": 1}


def test_a_fast_object_through_a_thin_zone_visits_it():
    frames = [0, 1, 2, 3]
    tracks = {1: {0: (200, 100), 1: (200, 140), 2: (200, 180), 3: (200, 220)}}  # 40 px a frame
    thin = {"name": "strip", "polygon": [[50, 160], [350, 160], [350, 170], [50, 170]]}
    results = run({"zones": [thin], "hysteresis": 2}, tracked_frames(tracks, frames)).results
    zone = results["zones"][0]
    assert (zone["entries"], zone["exits"]) == (1, 1)
    enter, leave = _events(results, "zone")
    assert enter["timestamp"] == pytest.approx(0.15) and leave["timestamp"] == pytest.approx(0.175)
    assert zone["dwell"]["max"] == pytest.approx(0.025)


def test_dwell_occupancy_and_intervals():
    frames = list(range(31))
    tracks = {
        1: straight(frames, (50, 150), (10, 0)),  # on the left edge at frame 5, the right at 25
        2: {f: (200.0, 150.0) for f in range(10, 20)},  # appears inside, lost inside
        3: {f: (200.0, 250.0) for f in frames},  # never inside
    }
    zone = {"name": "room", "polygon": [[100, 100], [300, 100], [300, 200], [100, 200]]}
    spec = {"zones": [zone], "hysteresis": 2, "interval": 1}
    results = run(spec, tracked_frames(tracks, frames)).results
    room = results["zones"][0]
    assert (room["entries"], room["exits"], room["peak_occupancy"]) == (2, 2, 2)
    seconds = {t["track_id"]: t["seconds"] for t in room["tracks"]}
    assert seconds == {1: pytest.approx(2.0), 2: pytest.approx(0.9)}
    assert room["dwell"]["p50"] == pytest.approx(1.45)
    assert room["dwell"]["p95"] == pytest.approx(0.9 + 0.95 * 1.1)
    assert room["dwell"]["max"] == pytest.approx(2.0)
    occupancy = [(i["occupancy_max"], i["occupancy_mean"]) for i in room["intervals"]]
    assert occupancy == [(1, 0.5), (2, 1.9), (1, 0.5), (0, 0.0)]
    assert [i["entries"] for i in room["intervals"]] == [{"person": 1}, {"person": 1}, {}, {}]
    assert [i["exits"] for i in room["intervals"]] == [{}, {"person": 1}, {"person": 1}, {}]
    enters = {e["track_id"]: (e["frame"], e["timestamp"]) for e in _events(results) if e["event"] == "enter"}
    assert enters == {1: (5, pytest.approx(0.5)), 2: (10, pytest.approx(1.0))}
    # A minimum dwell of a second drops the 0.9 s visit.
    longer = run({**spec, "min_dwell": 1.0}, tracked_frames(tracks, frames)).results["zones"][0]
    assert (longer["entries"], [t["track_id"] for t in longer["tracks"]]) == (1, [1])


def test_jitter_on_a_zone_edge_is_one_visit():
    frames = list(range(40))
    where = {f: (100.0 + (3 if f % 2 else -3), 150.0) for f in range(10, 30)}  # on the left edge
    where |= {f: (80.0 - 2 * f, 150.0) for f in range(10)}
    where |= {f: (150.0, 150.0) for f in range(30, 40)}  # then well inside
    zone = {"name": "room", "polygon": [[100, 100], [300, 100], [300, 200], [100, 200]]}
    results = run({"zones": [zone], "hysteresis": 5}, tracked_frames({1: where}, frames)).results
    assert results["zones"][0]["entries"] == 1
    bare = run({"zones": [zone], "hysteresis": 0}, tracked_frames({1: where}, frames)).results
    assert bare["zones"][0]["entries"] > 5


def test_class_filters_apply_per_rule():
    frames = list(range(11))
    tracks = {1: straight(frames, (100, 100), (0, 10)), 2: straight(frames, (200, 100), (0, 10))}
    labels = {1: "person", 2: "car"}
    spec = {"lines": [{**HORIZONTAL, "classes": ["car"]}, {**HORIZONTAL, "name": "all"}]}
    results = run(spec, tracked_frames(tracks, frames, labels=labels)).results
    cars, every = results["lines"]
    assert cars["out"] == 1 and cars["by_class"] == {"car": {"in": 0, "out": 1}}
    assert every["out"] == 2


def test_speed_with_a_calibration():
    frames = list(range(11))
    tracks = {1: straight(frames, (100, 100), (10, 0)), 2: {3: (50, 50)}}  # 2: seen once
    scale = {"image": [[0, 0], [400, 0], [400, 300], [0, 300]], "world": [[0, 0], [40, 0], [40, 30], [0, 30]]}
    results = run({"calibration": scale}, tracked_frames(tracks, frames)).results
    (speed,) = results["speed"]["tracks"]
    assert speed["track_id"] == 1
    assert speed["distance_m"] == pytest.approx(10.0) and speed["mean_speed_mps"] == pytest.approx(10.0)
    # A perspective view: the ground distance is the mapped path's length.
    view = {
        "image": [[100, 100], [300, 100], [380, 280], [20, 280]],
        "world": [[0, 20], [5, 20], [5, 0], [0, 0]],
    }
    walked = run({"calibration": view}, tracked_frames(tracks, frames)).results["speed"]["tracks"][0]
    matrix = cv2.getPerspectiveTransform(np.float32(view["image"]), np.float32(view["world"]))
    ground = cv2.perspectiveTransform(np.float32([[[100, 100]], [[200, 100]]]), matrix)
    assert walked["distance_m"] == pytest.approx(float(np.linalg.norm(ground[1] - ground[0])), rel=1e-5)
    assert run({}, tracked_frames(tracks, frames)).results["speed"] is None
